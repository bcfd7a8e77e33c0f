/**
 * Streams a file between two nodes over NATS and back, checking its SHA-256 both ways.
 *
 * The "vault" node hosts a `Vault` actor: `Put` receives a file as a streamed request
 * (`Actor.Upload`) and stores it; `Get` sends it back as a streamed reply. The "laptop" node
 * uploads a file from disk and downloads it again. Memory stays bounded whatever the file's size:
 * the streams flow under credit-based flow control, in 16 KiB pieces on the wire.
 *
 *   npx tsx examples/file-transfer.ts [file] [nats://127.0.0.1:4222]
 *
 * Without a file it makes a 32 MiB one; without a URL (and no NATS_URL) it starts a private
 * nats-server on a free loopback port if `nats-server` is installed.
 */
import { Rpc } from "@effect/rpc"
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Chunk, Console, Effect, Layer, Logger, LogLevel, Ref, Schema, Stream } from "effect"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as Path from "node:path"
import { Actor, type ActorSystem, Codec, Discovery, Errors, Node, Transport } from "../src/index.ts"

class NoSuchFile extends Schema.TaggedError<NoSuchFile>()("NoSuchFile", { name: Schema.String }) {}

const Stored = Schema.Struct({ name: Schema.String, bytes: Schema.Number, sha256: Schema.String })

export const Vault = Actor.make("Vault", [
  Rpc.make("Put", { payload: { name: Schema.String, data: Actor.Upload }, success: Stored, error: Errors.StreamError }),
  Rpc.make("Get", {
    payload: { name: Schema.String },
    success: Schema.Uint8ArrayFromSelf,
    error: NoSuchFile,
    stream: true
  })
])

/** a vault that keeps files in a directory of its own */
const VaultLive = (directory: string) =>
  Actor.toLayer(
    Vault,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const stored = yield* Ref.make(new Map<string, string>())
      return {
        Put: ({ data, name }) =>
          Effect.gen(function*() {
            const path = Path.join(directory, Path.basename(name))
            const hash = createHash("sha256")
            let bytes = 0
            const sink = Stream.tap(data, (piece) =>
              Effect.sync(() => {
                hash.update(piece)
                bytes += piece.byteLength
              }))
            yield* Stream.run(sink, fs.sink(path)).pipe(Effect.orDie)
            yield* Ref.update(stored, (files) => new Map(files).set(name, path))
            return { name, bytes, sha256: hash.digest("hex") }
          }),
        Get: ({ name }) =>
          Stream.unwrap(Effect.map(Ref.get(stored), (files) => {
            const path = files.get(name)
            return path === undefined
              ? Stream.fail(new NoSuchFile({ name }))
              : fs.stream(path, { chunkSize: 64 * 1024 }).pipe(Stream.orDie)
          }))
      }
    })
  )

const node = (name: string, url: string, kinds: Layer.Layer<never, never, ActorSystem.ActorSystem>) =>
  kinds.pipe(
    Layer.provideMerge(Node.layer({ name })),
    Layer.provideMerge(Layer.provideMerge(
      Discovery.nats({ heartbeat: "500 millis" }),
      Transport.nats({ servers: url, namespace: "file-transfer", name }).pipe(Layer.provide(Codec.msgpack))
    ))
  )

const sha256OfFile = (path: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const hash = createHash("sha256")
    yield* Stream.runForEach(fs.stream(path), (piece) => Effect.sync(() => hash.update(piece)))
    return hash.digest("hex")
  })

const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** the NATS URL given, or a private nats-server for as long as the program runs */
const natsUrl = (given: string | undefined) =>
  given !== undefined
    ? Effect.succeed(given)
    : Effect.gen(function*() {
      const port = yield* freePort
      const server = yield* Effect.acquireRelease(
        Effect.sync(() => spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" })),
        (child) => Effect.sync(() => child.kill())
      )
      yield* Effect.async<void, Error>((resume) => {
        server.once("error", (error) =>
          resume(
            Effect.fail(
              new Error(
                `cannot start nats-server (${error.message}): pass a NATS URL, or install it with: apt-get install -y nats-server`
              )
            )
          ))
        setTimeout(() => resume(Effect.void), 300)
      })
      return `nats://127.0.0.1:${port}`
    })

const program = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const work = yield* fs.makeTempDirectoryScoped({ prefix: "troupe-files-" })
  let file = process.argv[2]
  if (file === undefined) {
    file = Path.join(work, "sample.bin")
    yield* fs.writeFile(file, randomBytes(32 * 1024 * 1024))
  }
  const size = Number((yield* fs.stat(file)).size)
  // an empty NATS_URL counts as none
  const url = yield* natsUrl(process.argv[3] ?? (process.env["NATS_URL"] || undefined))
  const vaultDir = Path.join(work, "vault")
  yield* fs.makeDirectory(vaultDir)

  yield* Layer.build(node("vault", url, VaultLive(vaultDir).pipe(Layer.provide(NodeContext.layer))))
  const laptop = yield* Layer.build(node("laptop", url, Layer.empty))
  yield* Effect.provide(Discovery.awaitServing("Vault", { timeout: "10 seconds" }), laptop)
  const vault = (yield* Effect.provide(Actor.client(Vault), laptop))("main")

  const expected = yield* sha256OfFile(file)
  yield* Console.log(`file:     ${file} (${(size / 1024 / 1024).toFixed(1)} MiB), sha256 ${expected}`)

  const name = Path.basename(file)
  let started = Date.now()
  const stored = yield* vault.Put({ name, data: fs.stream(file, { chunkSize: 64 * 1024 }).pipe(Stream.orDie) })
  const upSeconds = (Date.now() - started) / 1000
  yield* Console.log(
    `uploaded: ${stored.bytes} bytes in ${upSeconds.toFixed(2)} s (${
      (size / 1024 / 1024 / upSeconds).toFixed(0)
    } MiB/s), ` +
      `vault's sha256 ${stored.sha256 === expected ? "matches" : "DIFFERS"}`
  )

  started = Date.now()
  const hash = createHash("sha256")
  let received = 0
  yield* Stream.runForEach(vault.Get({ name }), (piece) =>
    Effect.sync(() => {
      hash.update(piece)
      received += piece.byteLength
    }))
  const downSeconds = (Date.now() - started) / 1000
  const back = hash.digest("hex")
  yield* Console.log(
    `download: ${received} bytes in ${downSeconds.toFixed(2)} s (${
      (size / 1024 / 1024 / downSeconds).toFixed(0)
    } MiB/s), ` +
      `sha256 ${back === expected ? "matches" : "DIFFERS"}`
  )
  const missing = yield* Effect.flip(Stream.runCollect(vault.Get({ name: "nope" })).pipe(Effect.map(Chunk.size)))
  yield* Console.log(`a file the vault never got: ${missing._tag}`)
  if (stored.sha256 !== expected || back !== expected) return yield* Effect.fail(new Error("checksum mismatch"))
})

program.pipe(
  Effect.scoped,
  Effect.provide(NodeContext.layer),
  Logger.withMinimumLogLevel(LogLevel.Warning),
  NodeRuntime.runMain
)
