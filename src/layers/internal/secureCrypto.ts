/**
 * The cryptography of secure sessions, all from `node:crypto`: Ed25519 identities (raw 32-byte
 * seeds through a PKCS8 prefix), X25519 ephemeral keys (raw public keys read from SPKI DER, never
 * JWK: on Node 20 a loop exporting X25519 keys as JWK before `diffieHellman` hangs), HKDF-SHA-256
 * key derivation (salted with the transcript's SHA-256) giving one key per direction, AES-256-GCM
 * with a 96-bit nonce from a 64-bit counter, and a sliding replay window.
 *
 * @internal
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  sign,
  verify
} from "node:crypto"

const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex")
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex")

/** @internal the raw 32 bytes at the end of an SPKI DER export */
export const rawPublicKey = (key: KeyObject): Buffer => {
  const der = key.export({ format: "der", type: "spki" })
  return der.subarray(der.length - 32)
}

/** @internal */
export const encodeKey = (raw: Uint8Array): string => Buffer.from(raw).toString("base64url")

/** @internal decodes a printable public key (base64url or hex of 32 bytes) */
export const decodeKey = (text: string): Buffer | undefined => {
  const trimmed = text.trim()
  const bytes = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, "hex")
    : /^[A-Za-z0-9_-]{43}=?$/.test(trimmed)
    ? Buffer.from(trimmed, "base64url")
    : undefined
  return bytes !== undefined && bytes.length === 32 ? bytes : undefined
}

/** @internal an Ed25519 key pair from a 32-byte seed */
export const ed25519FromSeed = (
  seed: Uint8Array
): { readonly privateKey: KeyObject; readonly publicKey: KeyObject } => {
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: "der",
    type: "pkcs8"
  })
  return { privateKey, publicKey: createPublicKey(privateKey) }
}

/** @internal */
export const ed25519PublicKey = (raw: Uint8Array): KeyObject =>
  createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" })

/** @internal */
export const randomSeed = (): Buffer => randomBytes(32)

/** @internal */
export const signBytes = (privateKey: KeyObject, data: Uint8Array): Buffer => sign(null, data, privateKey)

/** @internal */
export const verifyBytes = (publicKey: KeyObject, data: Uint8Array, signature: Uint8Array): boolean => {
  try {
    return verify(null, data, publicKey, signature)
  } catch {
    return false
  }
}

/** @internal an ephemeral X25519 key pair, its public key raw */
export interface Ephemeral {
  readonly privateKey: KeyObject
  readonly publicKey: Buffer
}

/** @internal */
export const ephemeral = (): Ephemeral => {
  const pair = generateKeyPairSync("x25519")
  return { privateKey: pair.privateKey, publicKey: rawPublicKey(pair.publicKey) }
}

/** @internal the X25519 shared secret, or undefined for a malformed or low-order peer key */
export const sharedSecret = (own: KeyObject, peerPublic: Uint8Array): Buffer | undefined => {
  try {
    const secret = diffieHellman({
      privateKey: own,
      publicKey: createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peerPublic]), format: "der", type: "spki" })
    })
    // an all-zero secret means a low-order point: reject it
    return secret.some((b) => b !== 0) ? secret : undefined
  } catch {
    return undefined
  }
}

/** @internal length-prefixed concatenation: unambiguous transcripts */
export const concat = (parts: ReadonlyArray<Uint8Array | string>): Buffer => {
  let size = 0
  const bytes = parts.map((part) => typeof part === "string" ? Buffer.from(part, "utf8") : part)
  for (const part of bytes) size += 4 + part.byteLength
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const part of bytes) {
    out.writeUInt32BE(part.byteLength, at)
    out.set(part, at + 4)
    at += 4 + part.byteLength
  }
  return out
}

/** @internal splits length-prefixed parts; undefined when malformed */
export const split = (bytes: Uint8Array, count: number): Array<Buffer> | undefined => {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const parts: Array<Buffer> = []
  let offset = 0
  for (let i = 0; i < count; i++) {
    if (offset + 4 > buffer.length) return undefined
    const length = buffer.readUInt32BE(offset)
    offset += 4
    if (offset + length > buffer.length) return undefined
    parts.push(buffer.subarray(offset, offset + length))
    offset += length
  }
  return offset === buffer.length ? parts : undefined
}

/** @internal the protocol's name and version, bound into every transcript, signature and key */
export const PROTOCOL_LABEL = "troupe-secure-v2"

/**
 * @internal Both directions' keys from the shared secret and the transcript, by HKDF-SHA256
 * (RFC 5869): the secret as input key material, the SHA-256 of the transcript as salt, and one
 * label per direction as info (initiator → responder, and the way back).
 */
export const deriveKeys = (
  secret: Uint8Array,
  transcript: Uint8Array
): { readonly initiator: Buffer; readonly responder: Buffer } => {
  const salt = createHash("sha256").update(transcript).digest()
  const key = (direction: string) => Buffer.from(hkdfSync("sha256", secret, salt, `${PROTOCOL_LABEL} ${direction}`, 32))
  return { initiator: key("initiator to responder"), responder: key("responder to initiator") }
}

/** @internal */
export const randomKey = (): Buffer => randomBytes(32)

/** @internal a random non-zero uint32 (session ids, group epochs) */
export const randomId = (): number => randomBytes(4).readUInt32BE() || 1

const TAG_BYTES = 16
const TWO_32 = 0x1_0000_0000

// the cipher copies its IV: one buffer serves every frame (the first 4 bytes stay zero)
const nonce = Buffer.alloc(12)
const nonceOf = (counter: number): Buffer => {
  nonce.writeUInt32BE(Math.floor(counter / TWO_32), 4)
  nonce.writeUInt32BE(counter >>> 0, 8)
  return nonce
}

/** @internal AES-256-GCM: ciphertext followed by the 16-byte tag */
export const seal = (key: Buffer, counter: number, aad: Buffer, plaintext: Uint8Array): Buffer => {
  const cipher = createCipheriv("aes-256-gcm", key, nonceOf(counter))
  cipher.setAAD(aad)
  const head = cipher.update(plaintext)
  const tail = cipher.final()
  const tag = cipher.getAuthTag()
  return tail.length === 0 ? Buffer.concat([head, tag], head.length + TAG_BYTES) : Buffer.concat([head, tail, tag])
}

/** @internal the plaintext, or undefined when the frame was tampered with (or the key is wrong) */
export const open = (key: Buffer, counter: number, aad: Buffer, sealed: Uint8Array): Buffer | undefined => {
  if (sealed.byteLength < TAG_BYTES) return undefined
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonceOf(counter))
    decipher.setAAD(aad)
    decipher.setAuthTag(sealed.subarray(sealed.byteLength - TAG_BYTES))
    const head = decipher.update(sealed.subarray(0, sealed.byteLength - TAG_BYTES))
    const tail = decipher.final()
    return tail.length === 0 ? head : Buffer.concat([head, tail])
  } catch {
    return undefined
  }
}

/** @internal the part of a frame's additional data shared by its session or subject */
export const additionalPrefix = (source: string, subject: string, mode: number, key: number): Buffer =>
  Buffer.from(`${source}\u0000${subject}\u0000${mode}\u0000${key}\u0000`, "utf8")

/** @internal the additional data of a sealed frame: its prefix and the 64-bit counter */
export const additionalData = (prefix: Buffer, counter: number): Buffer => {
  const aad = Buffer.allocUnsafe(prefix.length + 8)
  prefix.copy(aad, 0)
  aad.writeUInt32BE(Math.floor(counter / TWO_32), prefix.length)
  aad.writeUInt32BE(counter >>> 0, prefix.length + 4)
  return aad
}

/** @internal the replay window: counters more than this far behind the highest are rejected */
export const REPLAY_WINDOW = 1024

/**
 * @internal A sliding replay window over counters (a bitmap of the last `REPLAY_WINDOW`):
 * accepts each counter once, in any order within the window.
 */
export class ReplayWindow {
  private highest = 0
  private readonly bits = new Uint32Array(REPLAY_WINDOW / 32)

  /** "ok", "replay" (seen) or "old" (behind the window) — does not record */
  check(counter: number): "ok" | "replay" | "old" {
    if (!Number.isSafeInteger(counter) || counter < 1) return "old"
    if (counter > this.highest) return "ok"
    if (this.highest - counter >= REPLAY_WINDOW) return "old"
    const index = counter % REPLAY_WINDOW
    return (this.bits[index >>> 5]! & (1 << (index & 31))) !== 0 ? "replay" : "ok"
  }

  /** records a counter that passed `check` and authenticated */
  record(counter: number): void {
    if (counter > this.highest) {
      if (counter - this.highest >= REPLAY_WINDOW) {
        this.bits.fill(0)
      } else {
        for (let c = this.highest + 1; c < counter; c++) {
          const index = c % REPLAY_WINDOW
          this.bits[index >>> 5]! &= ~(1 << (index & 31))
        }
      }
      this.highest = counter
    }
    const index = counter % REPLAY_WINDOW
    this.bits[index >>> 5]! |= 1 << (index & 31)
  }
}
