/**
 * Every subject of the wire protocol, built in one place. Subjects are logical: a transport puts
 * them under `troupe.<namespace>.` on the wire. Identifiers put into a subject (node ids, kinds)
 * are subject tokens (`Subject.isToken`), checked where they arrive.
 *
 *   node.<id>                     a node's direct subject (replies, credit, forwarded requests, handshakes)
 *   node.<caller>.nr.<requestId>  the reply slot of a remote ask or stream ("no responders", too large)
 *   node.<id>.fwd.<key>           a request this node forwarded, watched for "no responders"
 *   node.<id>.hs.<peer>           the reply slot of a secure handshake
 *   node.<id>.hb.<batch>          the reply slot of a sealed batch
 *   actor.<kind>                  requests to a kind (one queue group per kind)
 *   interrupt.<kind>              interrupts of requests to a kind
 *   topic.<subject>               topic events
 *   discovery                     heartbeats
 *   _batch.<slot>.<batch>         the reply slot of a NATS batch
 *
 * @internal
 */
import { isToken, isValidSubject } from "../Subject.ts"

/** @internal the namespace used when none is given */
export const DEFAULT_NAMESPACE = "default"

/** @internal the wire prefix of a namespace's subjects, `troupe.<namespace>.` */
export const prefixOf = (namespace: string | undefined): string => `troupe.${namespace ?? DEFAULT_NAMESPACE}.`

/** @internal whether `namespace` can name a namespace: one subject token without wildcards */
export const isNamespace = (namespace: string): boolean => isValidSubject(namespace, false) && !namespace.includes(".")

/** @internal a node's direct subject */
export const node = (nodeId: string): string => `node.${nodeId}`

/** @internal whether `subject` is a direct subject (of a node, or below it) */
export const isDirect = (subject: string): boolean => subject.startsWith("node.")

/**
 * @internal the node of a direct subject `node.<id>` (exactly that: no token after the id), or
 * `undefined`
 */
export const directPeerOf = (subject: string): string | undefined => {
  if (!subject.startsWith("node.") || subject.length === 5) return undefined
  for (let i = 5; i < subject.length; i++) {
    const c = subject.charCodeAt(i)
    if (c === 0x2e || c === 0x2a || c === 0x3e) return undefined // ".", "*", ">"
  }
  return subject.slice(5)
}

/** @internal the prefix of the reply slots of a caller's remote asks and streams */
export const replySlotsOf = (caller: string): string => `node.${caller}.nr.`

/** @internal the reply slot of one remote ask or stream */
export const replySlot = (caller: string, requestId: number): string => `${replySlotsOf(caller)}${requestId}`

/** @internal a reply slot's caller and request id */
export interface ReplySlot {
  readonly caller: string
  readonly requestId: number
}

const isRequestIdText = (text: string): boolean => text.length >= 1 && text.length <= 15 && /^\d+$/.test(text)

/** @internal the caller and request id of a reply slot `node.<caller>.nr.<requestId>`, if `subject` is one */
export const parseReplySlot = (subject: string): ReplySlot | undefined => {
  if (!subject.startsWith("node.")) return undefined
  const end = subject.indexOf(".nr.", 5)
  if (end < 0) return undefined
  const caller = subject.slice(5, end)
  const requestId = subject.slice(end + 4)
  return isToken(caller) && isRequestIdText(requestId) ? { caller, requestId: Number(requestId) } : undefined
}

/** @internal the prefix of the subjects a node watches the requests it forwarded on */
export const forwardsOf = (nodeId: string): string => `node.${nodeId}.fwd.`

/** @internal the prefix of a node's handshake reply slots (`node.<id>.hs.<peer>`) */
export const handshakeSlotsOf = (nodeId: string): string => `node.${nodeId}.hs.`

/** @internal the reply slot of a handshake of `nodeId` with `peer` */
export const handshakeSlot = (nodeId: string, peer: string): string => `${handshakeSlotsOf(nodeId)}${peer}`

/** @internal the prefix of a node's sealed-batch reply slots (`node.<id>.hb.<batch>`) */
export const sealedBatchSlotsOf = (nodeId: string): string => `node.${nodeId}.hb.`

/** @internal the reply slot of one sealed batch */
export const sealedBatchSlot = (nodeId: string, batch: number): string => `${sealedBatchSlotsOf(nodeId)}${batch}`

/** @internal the subject of a kind's requests (its handlers share the queue group `kind`) */
export const actor = (kind: string): string => `actor.${kind}`

/** @internal the subject of interrupts of a kind's requests */
export const interrupt = (kind: string): string => `interrupt.${kind}`

/** @internal the subject of a topic's events */
export const topic = (subject: string): string => `topic.${subject}`

/** @internal whether `subject` carries topic events */
export const isTopic = (subject: string): boolean => subject.startsWith("topic.")

/** @internal the subject of discovery heartbeats */
export const DISCOVERY = "discovery"

/** @internal whether frames to `subject` are signed when sealed with a group key: what every node may read (events, heartbeats) */
export const isSigned = (subject: string): boolean => isTopic(subject) || subject === DISCOVERY

/** @internal a fresh prefix of one transport's batch reply slots, `_batch.<random>` */
export const makeBatchSlots = (): string => `_batch.${Math.random().toString(36).slice(2, 10)}`

/** @internal the reply slot of one batch under `slots` (`"*"`: all of them) */
export const batchSlot = (slots: string, batch: number | "*"): string => `${slots}.${batch}`
