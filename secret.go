package keys

import (
	"fmt"
	"log/slog"
)

// Secret is a full API key in plain text. It marshals to JSON as the key
// itself (the create response must carry it), but every fmt verb and
// log/slog print it redacted, so that logging a struct that holds one leaks
// nothing. Convert it with string(s) where you mean to use the key.
type Secret string

// String returns a redacted placeholder.
func (Secret) String() string { return "[key redacted]" }

// GoString returns a redacted placeholder, for %#v.
func (Secret) GoString() string { return "[key redacted]" }

// Format prints a redacted placeholder for every verb.
func (Secret) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte("[key redacted]")) }

// LogValue keeps the key out of log/slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[key redacted]") }
