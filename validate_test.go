package keys_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// A key name is at most 200 characters as sent, counted in characters,
// not bytes: 200 multi-byte characters pass, 201 do not, and surrounding
// spaces count before they are trimmed.
func TestNameLengthBoundary(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("é", 200), true},
		{strings.Repeat("é", 201), false},
		{strings.Repeat("a", 199) + " ", true},
		{" " + strings.Repeat("a", 199) + " ", false},
		{strings.Repeat("a", 200), true},
	} {
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: c.name, Environment: keys.Test, AccountID: "acct_test"})
		var ve *keys.ValidationError
		if c.ok != (err == nil) || (err != nil && (!errors.As(err, &ve) || ve.Param != "name")) {
			t.Errorf("a name of %d characters (%d bytes): %v", len([]rune(c.name)), len(c.name), err)
		}
	}
}

// Every bidirectional-formatting control (the nine of CVE-2021-42574 and
// the three marks) and every C0 and C1 control character is refused in a
// name; their neighbours in the code charts are not.
func TestEveryInvisibleCharacterRefused(t *testing.T) {
	f := newFixture(t)
	create := func(name string) error {
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: name, Environment: keys.Test, AccountID: "acct_test"})
		return err
	}
	var refused []rune
	for r := rune(0); r < 0x20; r++ {
		refused = append(refused, r)
	}
	for r := rune(0x7F); r <= 0x9F; r++ {
		refused = append(refused, r)
	}
	refused = append(refused, 0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069)
	for _, r := range refused {
		if r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == 0x85 {
			continue // white space: trimmed at the ends, so try it inside
		}
		for _, name := range []string{"a" + string(r) + "b", string(r) + "ab", "ab" + string(r)} {
			var ve *keys.ValidationError
			if err := create(name); !errors.As(err, &ve) || ve.Param != "name" {
				t.Errorf("a name with U+%04X: %v", r, err)
			}
		}
	}
	for _, r := range []rune{'\t', '\n', '\v', '\f', '\r', 0x85} {
		if err := create("a" + string(r) + "b"); err == nil {
			t.Errorf("a name with U+%04X inside it was accepted", r)
		}
	}
	for _, r := range []rune{0x20, 0x7E, 0xA0, 0x061B, 0x061D, 0x200D, 0x2029, 0x2065, 0x206A, 0x2070, 0x2029, 0x202F} {
		if err := create("a" + string(r) + "b"); err != nil {
			t.Errorf("a name with U+%04X, which is no control: %v", r, err)
		}
	}
}

// A permission name is resource:action, each part of lowercase letters,
// digits, '_', '.' and '-': every end of every range passes, its
// neighbours outside do not, nor an empty part or a second colon.
func TestPermissionNameCharacters(t *testing.T) {
	vocab := func(p string) error {
		_, err := keys.New(memstore.New(), keys.WithVocabulary(p))
		return err
	}
	for _, p := range []string{"a:z", "z:a", "0:9", "9:0", "a_b:c.d", "a-b:c-d", "az09_.-:az09_.-"} {
		if err := vocab(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"`:a", "{:a", "/:a", "a:`", "a:{", "a:/", "A:a", "a:Z", ":a", "a:", "a", "a:b:c", "a :b", "a:b@"} {
		if err := vocab(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

// An unknown permission is echoed whole up to 64 bytes, and cut with an
// ellipsis beyond; WithMaxKeysPerAccount accepts 1.
func TestEchoedPermissionAt64Bytes(t *testing.T) {
	f := newFixture(t)
	for n, cut := range map[int]bool{64: false, 65: true} {
		p := "x:" + strings.Repeat("y", n-2)
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_test", Permissions: []string{p}})
		var ve *keys.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("an unknown permission of %d bytes: %v", n, err)
		}
		if got := strings.Contains(ve.Message, "…"); got != cut || (!cut && !strings.Contains(ve.Message, p)) {
			t.Errorf("an unknown permission of %d bytes is echoed as %q", n, ve.Message)
		}
	}
	if _, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(1)); err != nil {
		t.Fatalf("WithMaxKeysPerAccount(1): %v", err)
	}
}

// A cursor is at most 200 characters: a well-formed one of exactly 200
// (a position with a long ID) is read, and one character more is refused.
func TestCursorLengthBoundary(t *testing.T) {
	f := newFixture(t)
	f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	var c200 string
	for idLen := 1; len(c200) < 200; idLen++ {
		c200 = base64.RawURLEncoding.EncodeToString([]byte("1700000000000000|key_" + strings.Repeat("z", idLen)))
	}
	if len(c200) != 200 {
		t.Fatalf("a cursor of %d characters", len(c200))
	}
	if _, err := f.m.List(context.Background(), keys.ListFilter{AccountID: "acct_test", Cursor: c200}); err != nil {
		t.Fatalf("a well-formed cursor of 200 characters: %v", err)
	}
	var ve *keys.ValidationError
	if _, err := f.m.List(context.Background(), keys.ListFilter{AccountID: "acct_test", Cursor: c200 + "A"}); !errors.As(err, &ve) || ve.Param != "cursor" {
		t.Fatalf("a cursor of 201 characters: %v", err)
	}
}
