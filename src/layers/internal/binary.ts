/**
 * Binary inside JSON text.
 *
 * @internal
 */

/**
 * @internal In a `JSON.stringify` replacer, the bytes that `value` stands for, as base64: a
 * `Buffer` has been through its `toJSON` already, but its holder still has the original.
 */
export const base64Of = (holder: unknown, key: string, value: unknown): string | undefined => {
  if (typeof value !== "object" || value === null) return undefined
  const original = (holder as Record<string, unknown>)[key]
  return original instanceof Uint8Array
    ? Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString("base64")
    : undefined
}
