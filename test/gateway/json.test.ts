/**
 * JSON text of outgoing values (`internal/json.ts`): binary as base64, and which schemas may
 * hold binary once encoded.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import { mayHoldBinary, stringify, stringifyBinary } from "../../src/gateway/internal/json.ts"

describe("gateway/internal/json", () => {
  it("stringifyBinary writes Uint8Arrays, Buffers and views into a larger buffer as base64 strings", () => {
    const backing = new Uint8Array([9, 9, 0, 1, 255, 9])
    const value = {
      plain: new Uint8Array([0, 1, 255]),
      buffer: Buffer.from([1, 2, 254]),
      view: backing.subarray(2, 5),
      nested: [{ data: new Uint8Array([]) }],
      text: "AAH/",
      n: 1
    }
    expect(JSON.parse(stringifyBinary(value))).toEqual({
      plain: "AAH/",
      buffer: "AQL+",
      view: "AAH/",
      nested: [{ data: "" }],
      text: "AAH/",
      n: 1
    })
    expect(stringifyBinary(new Uint8Array([0, 1, 255]))).toBe(`"AAH/"`)
    expect(stringifyBinary(undefined)).toBe("null")
    expect(stringify(undefined)).toBe("null")
    expect(stringify({ a: [1, "x"] })).toBe(`{"a":[1,"x"]}`)
  })

  it("mayHoldBinary: only schemas whose encoded side can carry bytes (or anything)", () => {
    const may = (schema: Schema.Schema.Any) => mayHoldBinary(schema.ast)
    expect(may(Schema.Uint8ArrayFromSelf)).toBe(true)
    expect(may(Schema.Struct({ name: Schema.String, data: Schema.Uint8ArrayFromSelf }))).toBe(true)
    expect(may(Schema.Array(Schema.Union(Schema.Number, Schema.Uint8ArrayFromSelf)))).toBe(true)
    expect(may(Schema.Record({ key: Schema.String, value: Schema.Uint8ArrayFromSelf }))).toBe(true)
    expect(may(Schema.Unknown)).toBe(true)
    expect(may(Schema.Object)).toBe(true)
    // their JSON encodings carry no bytes: base64 text, numbers, ISO strings
    expect(may(Schema.Uint8ArrayFromBase64)).toBe(false)
    expect(may(Schema.Uint8Array)).toBe(false)
    expect(may(Schema.Struct({ i: Schema.Number, at: Schema.Date, tags: Schema.Array(Schema.String) }))).toBe(false)
    expect(may(Schema.Tuple(Schema.Literal("a"), Schema.optionalElement(Schema.Boolean)))).toBe(false)
    expect(may(Schema.NonEmptyString)).toBe(false)
  })
})
