package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/txcloud/keys/store"
)

func testFormat(t testing.TB) keyFormat {
	t.Helper()
	f, err := newKeyFormat("txc")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGenerateParse(t *testing.T) {
	f := testFormat(t)
	seen := map[Secret]bool{}
	for _, env := range []Environment{Live, Test} {
		for range 200 {
			k, id, err := f.generate(env, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if seen[k] {
				t.Fatal("duplicate key generated")
			}
			seen[k] = true
			if !strings.HasPrefix(string(k), "txc_"+string(env)+"_") || len(k) != 9+randomChars+checksumChars {
				t.Fatalf("key %d chars, wrong shape", len(k))
			}
			if !strings.HasPrefix(id, "key_") || len(id) != 40 || id[4+14] != '7' {
				t.Fatalf("id %q is not key_ + UUIDv7", id)
			}
			var buf [maxKeyLen]byte
			got, ok := f.parse(string(k), &buf)
			if !ok || got != env {
				t.Fatalf("parse(generated) = %q, %v", got, ok)
			}
			if string(buf[:len(k)]) != string(k) {
				t.Fatal("parse did not copy the key into the buffer")
			}
		}
	}
}

// Every single-character change of a key must fail the checksum or the
// alphabet check: CRC-32 detects all single-symbol errors in this length.
func TestParseRejectsEverySingleCharacterChange(t *testing.T) {
	f := testFormat(t)
	k, _, err := f.generate(Live, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var buf [maxKeyLen]byte
	for i := range len(k) {
		for c := 0; c < 256; c++ {
			if byte(c) == k[i] {
				continue
			}
			b := []byte(k)
			b[i] = byte(c)
			if _, ok := f.parse(string(b), &buf); ok {
				t.Fatalf("changed byte %d to %#x and parse accepted it", i, c)
			}
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	f := testFormat(t)
	k, _, _ := f.generate(Test, time.Now())
	good := string(k)
	cases := map[string]string{
		"empty":              "",
		"prefix only":        "txc_test_",
		"short":              good[:len(good)-1],
		"long":               good + "0",
		"other brand":        "abc" + good[3:],
		"upper prefix":       strings.ToUpper(good[:9]) + good[9:],
		"space inside":       good[:20] + " " + good[21:],
		"trailing newline":   good[:len(good)-1] + "\n",
		"leading whitespace": " " + good[1:],
		"non-ascii":          good[:10] + "é" + good[12:],
		"digest as key":      fmt.Sprintf("%x", sha256.Sum256([]byte(good))),
	}
	var buf [maxKeyLen]byte
	for name, key := range cases {
		t.Run(name, func(t *testing.T) {
			if _, ok := f.parse(key, &buf); ok {
				t.Fatal("accepted")
			}
		})
	}
}

func TestKeyPrefixOption(t *testing.T) {
	f, err := newKeyFormat("acme2")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _ := f.generate(Live, time.Now())
	if !strings.HasPrefix(string(k), "acme2_live_") {
		t.Fatalf("got %d-char key with another prefix", len(k))
	}
	var buf [maxKeyLen]byte
	if _, ok := testFormat(t).parse(string(k), &buf); ok {
		t.Fatal("a txc manager accepted an acme2 key")
	}
	for _, bad := range []string{"", "ACME", "a_b", "abcdefghijklmnopq", "tx c"} {
		if _, err := newKeyFormat(bad); err == nil {
			t.Errorf("brand %q accepted", bad)
		}
	}
}

func TestChecksumMatchesStdlib(t *testing.T) {
	for _, s := range []string{"", "a", "txc_live_", "0123456789abcdefghijklmnopqrstuvwxyz", strings.Repeat("Zz9", 40)} {
		got, _ := crcUpdate(0, s)
		if want := crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("crc(%q) = %08x, want %08x", s, got, want)
		}
		half := len(s) / 2
		first, _ := crcUpdate(0, s[:half])
		if second, _ := crcUpdate(first, s[half:]); second != got {
			t.Fatalf("crc of %q in two parts differs", s)
		}
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte("txc_live_"), []byte("abc"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		first, _ := crcUpdate(0, a)
		got, bad := crcUpdate(first, b)
		if want := crc32.ChecksumIEEE(append(append([]byte{}, a...), b...)); got != want {
			t.Fatalf("crc = %08x, want %08x", got, want)
		}
		allBase62 := true
		for _, c := range b {
			allBase62 = allBase62 && isBase62(c)
		}
		if (bad&0x80 == 0) != allBase62 {
			t.Fatalf("alphabet flag wrong for %q", b)
		}
	})
}

// FuzzParseKey: parse never panics, and accepts exactly the keys whose
// shape, alphabet and checksum are right.
func FuzzParseKey(f *testing.F) {
	kf := testFormat(f)
	k, _, _ := kf.generate(Live, time.Now())
	f.Add(string(k))
	f.Add("txc_test_" + strings.Repeat("0", randomChars+checksumChars))
	f.Add("")
	f.Fuzz(func(t *testing.T, key string) {
		var buf [maxKeyLen]byte
		env, ok := kf.parse(key, &buf)
		if !ok {
			return
		}
		if len(key) != kf.length || (env == Live) != strings.HasPrefix(key, "txc_live_") {
			t.Fatalf("accepted a key of the wrong shape")
		}
		body := key[9 : len(key)-checksumChars]
		sum, _ := crcUpdate(0, key[:len(key)-checksumChars])
		for _, c := range []byte(body + key[len(key)-checksumChars:]) {
			if !isBase62(c) {
				t.Fatalf("accepted a key outside the alphabet")
			}
		}
		if want := string(appendChecksum(nil, sum)); want != key[len(key)-checksumChars:] {
			t.Fatalf("accepted a wrong checksum")
		}
	})
}

func TestHMACMatchesStdlib(t *testing.T) {
	key := []byte("txc_live_" + strings.Repeat("a", randomChars+checksumChars))
	for _, n := range []int{32, 63, 64, 65, 200} {
		pepper := []byte(strings.Repeat("p", n))
		h := newDigester(pepper)
		mac := hmac.New(sha256.New, pepper)
		mac.Write(key)
		if got := h.sum(key); string(got[:]) != string(mac.Sum(nil)) {
			t.Fatalf("pepper of %d bytes: HMAC differs from crypto/hmac", n)
		}
	}
	plain := newDigester(nil)
	if got, want := plain.sum(key), sha256.Sum256(key); got != want {
		t.Fatal("unpeppered digest is not SHA-256")
	}
}

func TestDigestEqual(t *testing.T) {
	var a, b store.Digest
	for i := range a {
		a[i], b[i] = byte(i), byte(i)
	}
	if !digestEqual(&a, &b) {
		t.Fatal("equal digests compared unequal")
	}
	for i := range b {
		c := b
		c[i] ^= 0x01
		if digestEqual(&a, &c) {
			t.Fatalf("digests differing in byte %d compared equal", i)
		}
	}
}

func TestSecretsPrintRedacted(t *testing.T) {
	s := Secret("txc_live_SECRETSECRETSECRETSECRETSECRETSE000000")
	var d store.Digest
	copy(d[:], "0123456789abcdef0123456789abcdef")
	holder := struct {
		K Secret
		D store.Digest
	}{s, d}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		for _, out := range []string{fmt.Sprintf(verb, s), fmt.Sprintf(verb, holder), fmt.Sprintf(verb, &holder), fmt.Sprintf(verb, d)} {
			if strings.Contains(out, "SECRET") || strings.Contains(out, "0123456789abcdef") || strings.Contains(out, "30313233") {
				t.Errorf("%s leaked: %s", verb, out)
			}
		}
	}
	b, err := json.Marshal(struct {
		Key Secret `json:"key"`
	}{s})
	if err != nil || !strings.Contains(string(b), string(s)) {
		t.Fatalf("JSON must carry the key itself (the 201 body): %s %v", b, err)
	}
}

// The stored prefix must not share memory with the secret: a substring
// would keep the whole plaintext key alive inside the store.
func TestPrefixDoesNotAliasSecret(t *testing.T) {
	f := testFormat(t)
	k, _, _ := f.generate(Live, time.Now())
	p := f.displayPrefix(k)
	start := uintptr(unsafe.Pointer(unsafe.StringData(string(k))))
	ps := uintptr(unsafe.Pointer(unsafe.StringData(p)))
	if ps >= start && ps < start+uintptr(len(k)) {
		t.Fatal("prefix points into the secret's bytes")
	}
	if !strings.HasPrefix(string(k), p) || len(p) != 9+displayChars {
		t.Fatalf("prefix is %d chars", len(p))
	}
}
