package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/memstore"
)

// The provider's budget on an account is spent by every key of the
// account, beside each key's own, both or neither: a key out of its own
// credits spends none of the account's (refunded), an account out of its
// credits spends none of the key's, and the refusal says which ran out. A
// key a customer creates spends the account's budget too, so a new key
// escapes nothing (it used to: a key without credits served every request
// after the budget was spent). The customer reads the budget; only the
// provider sets it.
func TestAccountCredits(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	m := newManagerAt(t, memstore.New(), clock, keys.WithPlans(func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{Name: "metered"}, nil
	}, time.Minute))
	if err := m.SetAccountCredits(ctx, "acct_a", &credits.Budget{Remaining: 5}); err != nil {
		t.Fatal(err)
	}
	own, err := m.Create(ctx, keys.APIKeyCreate{Name: "own", Environment: keys.Live, AccountID: "acct_a", Credits: &credits.Budget{Remaining: 2},
		Permissions: []string{"developers:write"}})
	if err != nil {
		t.Fatal(err)
	}
	ownV, _ := m.Verify(ctx, string(own.Key)) // 5 → 4, 2 → 1
	// A key the customer creates, with no credits of its own.
	caller := ownV.Principal()
	made, err := m.As(caller).Create(ctx, keys.APIKeyCreate{Name: "made", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	account := func() int64 {
		a, err := m.Account(ctx, "acct_a")
		if err != nil || a.Credits == nil {
			t.Fatalf("the account: %+v, %v", a, err)
		}
		return a.Credits.Remaining
	}
	keyLeft := func(id string) int64 {
		k, err := m.Get(ctx, id)
		if err != nil || k.Credits == nil {
			t.Fatal(err)
		}
		return k.Credits.Remaining
	}
	v, err := m.Verify(ctx, string(own.Key)) // 4 → 3, 1 → 0
	if err != nil || v.Credits != 0 || v.Spent != 1 {
		t.Fatalf("the key's last credit: %+v, %v; want 0 left (the smaller of 3 and 0)", v, err)
	}
	var ce *keys.CreditsError
	if _, err := m.Verify(ctx, string(own.Key)); !errors.As(err, &ce) || ce.Account {
		t.Fatalf("a key out of its own credits: %v (account %v), want the key's CreditsError", err, ce != nil && ce.Account)
	}
	if account() != 3 {
		t.Fatalf("the account holds %d after a refusal by the key's credits; want 3 (refunded)", account())
	}
	for i := range 3 {
		v, err := m.Verify(ctx, string(made.Key))
		if err != nil || v.Credits != int64(2-i) {
			t.Fatalf("request %d of the customer's key: %+v, %v", i+1, v, err)
		}
	}
	if _, err := m.Verify(ctx, string(made.Key)); !errors.As(err, &ce) || !ce.Account {
		t.Fatalf("an account out of credits: %v, want the account's CreditsError", err)
	}
	if err := m.SetAccountCredits(ctx, "acct_a", &credits.Budget{Remaining: 0}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetAccountCredits(ctx, "acct_a", &credits.Budget{Remaining: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ctx, own.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 5})}); err != nil {
		t.Fatal(err)
	}
	// The last credit of the account: the smaller of the two is shown.
	if err := m.SetAccountCredits(ctx, "acct_a", &credits.Budget{Remaining: 1}); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Verify(ctx, string(own.Key)); err != nil || v.Credits != 0 || keyLeft(own.ID) != 4 {
		t.Fatalf("the account's last credit: %+v, %v; want 0 shown (the key holds 4)", v, err)
	}
	if _, err := m.Verify(ctx, string(own.Key)); !errors.As(err, &ce) || !ce.Account || keyLeft(own.ID) != 4 {
		t.Fatalf("an account out of credits spent the key's: %v, key %d left", err, keyLeft(own.ID))
	}
	// Removed: nothing of the account's to spend.
	if err := m.SetAccountCredits(ctx, "acct_a", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Verify(ctx, string(made.Key)); err != nil || v.Spent != 0 {
		t.Fatalf("after the account's budget is removed: %+v, %v", v, err)
	}
	if a, err := m.Account(ctx, "acct_a"); err != nil || a.Credits != nil || a.Plan == nil || a.Plan.Name != "metered" {
		t.Fatalf("the account after removal: %+v, %v", a, err)
	}
	// Without plans there are no account budgets.
	plain := newManagerAt(t, memstore.New(), clock)
	if err := plain.SetAccountCredits(ctx, "acct_a", &credits.Budget{Remaining: 1}); err == nil {
		t.Fatal("account credits without WithPlans were accepted")
	}
}
