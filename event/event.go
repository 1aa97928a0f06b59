// Package event describes the changes a keys.Manager reports: a key
// created, updated, disabled, enabled, revoked, rolled, found leaked, or
// about to expire. A host receives each Event in-process through
// keys.WithEventHook, after the change is stored, to tell the key's
// holder or to keep an audit trail.
//
// An Event is plain data, ready to be stored and sent as it is: the key it
// is about travels as the JSON the API shows (Data), never with its
// secret or digest.
package event

import (
	"encoding/json"
	"time"
)

// Type names a change.
type Type string

// The types of event.
const (
	KeyCreated Type = "key.created"
	KeyUpdated Type = "key.updated"
	KeyRevoked Type = "key.revoked"
	KeyRolled  Type = "key.rolled"
	// KeyDisabled and KeyEnabled report an update that disabled or
	// enabled a key (an update that also changed other fields reports
	// key.updated as well).
	KeyDisabled Type = "key.disabled"
	KeyEnabled  Type = "key.enabled"
	// KeyExpiring reports a key that will expire soon, when the host asks
	// (keys.Manager.NotifyExpiring).
	KeyExpiring Type = "key.expiring"
	// KeyLeaked reports a key found in public (keys.Manager.ReportLeak);
	// Event.Leak says where.
	KeyLeaked Type = "key.leaked"
)

// Event is one change to a key.
type Event struct {
	// ID is "evt_" and a version 7 UUID: unique, and in time order.
	ID   string
	Type Type
	At   time.Time
	// AccountID and KeyID name the key's account and the key (for
	// key.rolled, the new key).
	AccountID string
	KeyID     string
	// Actor is the Subject of the principal that made the change (the
	// key ID of an API key); empty for the host (the Manager's own
	// methods).
	Actor string
	// Replaces, for key.rolled, is the ID of the key that was rolled.
	Replaces string
	// Leak, for key.leaked, is where the key was found.
	Leak *Leak
	// Data is the key after the change as the API shows it (a
	// keys.APIKey in JSON), without its secret.
	Data json.RawMessage
}

// Leak says where a key was found in public (a secret-scanning report).
type Leak struct {
	URL    string // where it was found
	Source string // what kind of place: "content", "commit", "npm", …
	Type   string // the scanner's name for the kind of secret
}
