/**
 * A node's Ed25519 identity for `Secure`: the public key is printable, the private key lives
 * in a WeakMap beside the object (not enumerable, printed or serialised) and is reached only
 * through `keysOf`.
 *
 * @internal
 */
import type { KeyObject } from "node:crypto"
import { inspect } from "node:util"
import * as C from "./secureCrypto.ts"

/** @internal */
export const IdentityTypeId: unique symbol = Symbol.for("troupe/Secure/Identity")

/** @internal an identity's key pair, and its raw 32-byte public key */
export interface IdentityKeys {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  readonly raw: Buffer
}

const identityKeys = new WeakMap<object, IdentityKeys>()

/** @internal An Ed25519 identity; its private key is reachable only through `keysOf`. */
export class Identity {
  readonly [IdentityTypeId]: typeof IdentityTypeId = IdentityTypeId
  readonly publicKey: string
  constructor(seed: Uint8Array) {
    const pair = C.ed25519FromSeed(seed)
    const raw = C.rawPublicKey(pair.publicKey)
    this.publicKey = C.encodeKey(raw)
    identityKeys.set(this, { privateKey: pair.privateKey, publicKey: pair.publicKey, raw })
  }
  toJSON(): unknown {
    return { _id: "Identity", publicKey: this.publicKey }
  }
  toString(): string {
    return `Identity(${this.publicKey})`
  }
  [inspect.custom](): string {
    return this.toString()
  }
}

/** @internal */
export const keysOf = (identity: Identity): IdentityKeys => identityKeys.get(identity)!
