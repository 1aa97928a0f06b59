package keys

import (
	"fmt"
	"log/slog"
)

// A Manager holds secrets in unexported fields (the HMAC pads derived from
// the pepper, the idempotency secret), and fmt prints unexported fields by
// reflection: %+v on a *Manager would print them. So the Manager and the
// types holding them print redacted, like Secret and Digest.

// Format prints the Manager without its secrets.
func (m *Manager) Format(s fmt.State, _ rune) {
	fmt.Fprintf(s, "keys.Manager{prefix: %s, peppered: %t, secrets: [redacted]}", m.format.live, m.hash.peppered)
}

// LogValue keeps the Manager's secrets out of log/slog output.
func (m *Manager) LogValue() slog.Value {
	return slog.GroupValue(slog.String("prefix", m.format.live), slog.Bool("peppered", m.hash.peppered))
}

// Format prints a redacted placeholder: the pads are the pepper in disguise.
func (hasher) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte("[hasher redacted]")) }

// Format prints a redacted placeholder for the idempotency secret.
func (idempotency) Format(s fmt.State, _ rune) {
	_, _ = s.Write([]byte("[idempotency secret redacted]"))
}

// LogValue logs the created key without its secret. Without it, a JSON log
// handler would encode the struct with encoding/json, which writes the key:
// Secret's own LogValue applies only when the Secret is the logged value
// itself, not a field of one.
func (c APIKeyCreated) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("prefix", c.Prefix),
		slog.String("environment", string(c.Environment)), slog.String("key", "[key redacted]"))
}

// LogValue logs a record without its digest, for the same reason.
func (r *Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("account_id", r.AccountID),
		slog.String("prefix", r.Prefix), slog.String("environment", string(r.Environment)))
}

// MarshalJSON writes a redacted placeholder: nothing needs a digest in
// JSON (stores use its bytes), and a log handler that encodes structs as
// JSON would otherwise print it.
func (Digest) MarshalJSON() ([]byte, error) { return []byte(`"[digest redacted]"`), nil }
