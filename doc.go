// Package keys issues, stores, verifies and manages API keys for a Go
// service, and with its httpadapter package serves the TXCloud DevEx
// endpoints (POST /developers/keys and the key lifecycle) from the
// service's own HTTP server.
//
// # Keys
//
// A key looks like txc_live_<32 random base62 characters><6-character
// checksum> (txc_test_… for the test environment). The random part comes
// from crypto/rand (about 190 bits). The checksum (CRC-32, as in GitHub's
// tokens) lets Verify reject a mistyped or made-up key without hashing it or
// asking the store.
//
// The store keeps only a digest of each key: SHA-256, or HMAC-SHA-256 under
// a server-side pepper (WithPepper), so a copy of the store does not let
// anyone use the keys. The plaintext is returned once, by Create (or Roll),
// as a Secret, which prints redacted through fmt and log/slog; string(s) is
// the key.
//
// # Verifying
//
// Manager.Verify is the hot path of every request a host serves. It checks
// the format and checksum, hashes the key once, looks the digest up once,
// then checks revocation, expiry, environment, IP allowlist, permissions and
// the key's rate limit, in that order, each failure its own sentinel error
// (ErrInvalidKey, ErrKeyRevoked, ...). It allocates nothing, takes no
// global lock and, on the in-memory store, costs about 1.3 times one
// SHA-256 plus one map lookup. Last-used times are kept in memory and
// written in batches.
//
// # Managing keys
//
// Create, Get, List, Update, Revoke and Roll come in one method set, two
// forms. On the Manager they act as a trusted caller: any account (named in
// the request), any permission of the vocabulary. On m.As(p) they act for a
// Principal, as the HTTP endpoints do: only its account's keys, and no
// permission it lacks. Revocation holds for the very next Verify; Roll
// issues a successor key and retires the old one after a grace period; a
// revoked key's record stays, unchangeable, for audit. WithEventHook
// reports every change.
//
// # Stores
//
// A Store persists key records: six methods, whose contract is written in
// store.go and checked, rule by rule, by package keystest, which also runs
// a Manager on the store. Package memstore is the in-memory one; the
// pgstore module shares keys between instances through PostgreSQL. A
// Limiter counts requests per key: NewMemoryLimiter by default, or the
// redislimit module's Redis limiter, shared by every instance.
//
// # Idempotency
//
// IdempotencyKey makes a Create or Roll idempotent: a retry by the same
// caller with the same key and request returns the first result for 24
// hours. The stored result is
// sealed (XChaCha20-Poly1305 under a key derived from a server secret and
// the idempotency key), so no plaintext key is ever kept at rest.
package keys
