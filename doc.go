// Package keys issues, stores, verifies and manages API keys for a Go
// service: the Manager, which a host creates with New on a store, and
// calls to create, verify, list, update, revoke and roll keys, for itself
// or (through As) on a customer's behalf. Package httpadapter serves the
// TXCloud DevEx key endpoints and an authentication middleware on top of
// it, grpcadapter the same rules for gRPC.
//
// The other packages each hold one concept: memstore, pgstore and
// sqlitestore are stores; store is the contract a store implements (as
// database/sql/driver is to database/sql), and store/storetest the suite
// that checks one; limit counts requests against limits (redislimit
// shares them through Redis); usage is what usage reads return; credits
// is a key's budget of uses; event is the changes a Manager reports;
// observe is the hook for metrics and traces (keysotel implements it).
//
// # Keys
//
// A key looks like txc_live_<32 random base62 characters><6-character
// checksum> (txc_test_… for the test environment). The random part comes
// from crypto/rand (about 190 bits). The checksum (CRC-32, as in GitHub's
// tokens) lets Verify reject a mistyped or made-up key without hashing it
// or asking the store. The store keeps only a digest of each key:
// SHA-256, or HMAC-SHA-256 under a server-side pepper (WithPepper), so a
// copy of the store does not let anyone use the keys. The plaintext is
// returned once, by Create (or Roll), as a Secret, which prints redacted
// through fmt and log/slog; string(s) is the key.
//
// # Verifying
//
// Manager.Verify is the hot path of every request a host serves. It
// checks the format and checksum, hashes the key once, looks the digest up
// once, then checks revocation, expiry, disabling, environment, IP
// allowlist and permissions, then the limits (the key's own rate limit
// and, with WithPlans, its account's), then the key's credits, if it has
// a budget: each failure its own sentinel error (ErrInvalidKey,
// ErrKeyRevoked, ...), and a request refused at one step spends nothing
// at a later one. It allocates nothing and takes no lock shared between
// keys. Last-used times and usage counts (CountUsage) are kept in memory
// and written in batches.
//
// # Managing keys
//
// Create, Get, List, Update, Revoke and Roll come in one method set, two
// forms. On the Manager they act as a trusted caller: any account (named
// in the request), any permission of the vocabulary (WithVocabulary). On
// m.As(p) they act for a Principal, as the HTTP endpoints do: only its
// account's keys, and no permission it lacks. Revocation holds for the
// very next Verify; Roll issues a successor key and retires the old one
// after a grace period; a revoked key's record stays, unchangeable, for
// audit. WithEventHook reports every change. IdempotencyKey makes a Create
// or Roll safe to retry: the stored result is sealed (XChaCha20-Poly1305
// under a key derived from a server secret and the idempotency key), so
// no plaintext key is ever kept at rest.
//
// # Plans, usage and credits
//
// WithPlans gives each account its limits (per minute, per UTC day, per
// endpoint, in flight, and a cap on its keys). CountUsage counts every
// request a verified key makes, by API (OnAPI names it); UsageSummary and
// KeyUsage read the counts, priced by WithPrices. A key may carry a
// budget of credits (package credits) that its requests spend, at what
// WithCreditCosts sets for each API.
//
// # Beyond
//
// Import brings in keys another system issued; ReportLeak revokes a key
// found in public (package httpadapter/secretscanning receives GitHub's
// reports); NotifyExpiring announces keys about to expire. The documents
// in the repository's docs directory are the guides.
package keys
