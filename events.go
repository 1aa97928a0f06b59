package keys

import (
	"context"
	"encoding/json"

	"github.com/txcloud/keys/event"
)

// emit reports a change to the key k to the host's hook (WithEventHook),
// after it is stored, in the goroutine that made it. Without a hook it
// costs nothing: the key is encoded only for a hook.
func (m *Manager) emit(ctx context.Context, e event.Event, k *APIKey) {
	if m.onEvent == nil {
		return
	}
	now := m.now()
	e.ID, e.At, e.KeyID = newEventID(now), now, k.ID
	e.Data, _ = json.Marshal(k) // an APIKey always encodes
	m.onEvent(ctx, e)
}

// keyEvent is the event of a change by c to the key k of account.
func keyEvent(typ event.Type, account string, c caller) event.Event {
	return event.Event{Type: typ, AccountID: account, Actor: c.p.Subject}
}
