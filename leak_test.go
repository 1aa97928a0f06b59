package keys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
)

// A leaked key is revoked (or disabled) and reported with where it was
// found; a revoked one is found but not acted on; an unknown one is not
// found and changes nothing.
func TestReportLeak(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	a := f.create(t, keys.APIKeyCreate{Name: "a", Environment: keys.Live})
	b := f.create(t, keys.APIKeyCreate{Name: "b", Environment: keys.Live})
	leak := event.Leak{URL: "https://github.com/o/r/blob/x/f.txt", Source: "content", Type: "txcloud_api_key"}
	ev.reset()
	rep, err := f.m.ReportLeak(ctx, string(a.Key), leak, keys.LeakRevoke)
	if err != nil || !rep.Found || !rep.Acted || rep.KeyID != a.ID {
		t.Fatalf("ReportLeak = %+v, %v", rep, err)
	}
	if _, err := f.m.Verify(ctx, string(a.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a leaked key still works: %v", err)
	}
	types := ev.types()
	if len(types) != 2 || types[0] != event.KeyRevoked || types[1] != event.KeyLeaked || ev.all[1].Leak.URL != leak.URL {
		t.Fatalf("events %v", types)
	}
	if strings.Contains(fmt.Sprintf("%+v", ev.all), string(a.Key)) {
		t.Fatal("an event holds the key")
	}
	rep, err = f.m.ReportLeak(ctx, string(a.Key), leak, keys.LeakRevoke)
	if err != nil || !rep.Found || rep.Acted {
		t.Fatalf("reporting a revoked key again = %+v, %v", rep, err)
	}
	rep, err = f.m.ReportLeak(ctx, string(b.Key), leak, keys.LeakDisable)
	if err != nil || !rep.Acted {
		t.Fatalf("disable = %+v, %v", rep, err)
	}
	if _, err := f.m.Verify(ctx, string(b.Key)); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("a leaked key, disabled: %v", err)
	}
	ev.reset()
	for _, k := range []string{changeLast(string(b.Key)), "txc_live_" + strings.Repeat("A", 38), "anything"} {
		if rep, err := f.m.ReportLeak(ctx, k, leak, keys.LeakRevoke); err != nil || rep.Found {
			t.Fatalf("ReportLeak(unknown) = %+v, %v", rep, err)
		}
	}
	if len(ev.all) != 0 {
		t.Fatalf("unknown keys emitted %v", ev.types())
	}
}
