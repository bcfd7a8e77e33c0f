import { describe, expect, it } from "@effect/vitest"
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Envelope from "../../src/schema/Envelope.ts"

const tagsOf = (union: { readonly members: ReadonlyArray<Schema.Schema.Any> }) =>
  union.members.map((member) => {
    const tag = SchemaAST.getPropertySignatures(member.ast).find((p) => p.name === "_tag")!.type
    return (tag as SchemaAST.Literal).literal
  })

describe("Frame", () => {
  it("the deprecated Envelope is the Frame schema itself", () => {
    expect(Envelope.Envelope).toBe(Envelope.Frame)
  })

  it("every frame is sent by a caller, by a handler, or between peers", () => {
    const grouped = new Set([
      ...tagsOf(Envelope.FromCaller),
      ...tagsOf(Envelope.FromHandler),
      ...tagsOf(Envelope.PeerToPeer)
    ])
    expect([...grouped].sort()).toEqual(tagsOf(Envelope.Frame).sort())
    expect(tagsOf(Envelope.FromCaller)).toEqual(["Request", "Interrupt", "Ack", "Items"])
    expect(tagsOf(Envelope.FromHandler)).toEqual(["Exit", "Ack", "Items"])
  })
})
