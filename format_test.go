package keys_test

import (
	"context"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// The alphabet of a key's body is checked even when the checksum is right:
// a key whose body holds any byte outside base62, with a checksum computed
// over that body, is refused without a store lookup.
func TestBodyAlphabetCheckedBehindAValidChecksum(t *testing.T) {
	f := newFixture(t)
	k := f.create(t, keys.APIKeyCreate{Name: "shape", Environment: keys.Live})
	key := string(k.Key)
	const prefix, sumChars = len("txc_live_"), 6
	base62 := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	checksum := func(s string) string {
		c := crc32.ChecksumIEEE([]byte(s))
		var d [sumChars]byte
		for i := sumChars - 1; i >= 0; i-- {
			d[i] = base62[c%62]
			c /= 62
		}
		return string(d[:])
	}
	body := key[:len(key)-sumChars]
	if checksum(body) != key[len(key)-sumChars:] {
		t.Fatal("the test's checksum is not the format's")
	}
	before := f.store.lookups.Load()
	for b := 0; b < 256; b += 3 {
		if strings.IndexByte(base62, byte(b)) >= 0 {
			continue
		}
		for at := prefix; at < len(body); at++ { // every position: the check runs 8 bytes at a time
			forged := body[:at] + string([]byte{byte(b)}) + body[at+1:]
			forged += checksum(forged)
			if _, err := f.m.Verify(context.Background(), forged); !errors.Is(err, keys.ErrInvalidKey) {
				t.Fatalf("a body with byte %#x at %d and a valid checksum: %v", b, at, err)
			}
		}
	}
	if n := f.store.lookups.Load() - before; n != 0 {
		t.Fatalf("malformed bodies cost %d store lookups", n)
	}
}

// Every character of a key's random part is equally likely: a chi-square
// test over 8,000 keys (256,000 characters in 62 classes; 61 degrees of
// freedom). The bound, 125, is passed by chance less than once in a
// million runs; a rejection bound off by one byte (one character a quarter
// more likely) gives about 250.
func TestRandomPartIsUniform(t *testing.T) {
	f := newFixture(t, keys.WithMaxKeysPerAccount(1_000_000))
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var counts [62]int
	total := 0
	for range 8000 {
		k := f.create(t, keys.APIKeyCreate{Name: "uniform", Environment: keys.Test})
		random := string(k.Key)[len("txc_test_") : len(k.Key)-6]
		if len(random) != 32 {
			t.Fatalf("a random part of %d characters", len(random))
		}
		for i := 0; i < len(random); i++ {
			counts[strings.IndexByte(base62, random[i])]++
			total++
		}
	}
	want := float64(total) / 62
	chi := 0.0
	for _, c := range counts {
		chi += math.Pow(float64(c)-want, 2) / want
	}
	t.Logf("chi-square %.1f over %d characters (61 degrees of freedom: mean 61)", chi, total)
	if chi > 125 {
		t.Fatalf("the random part is not uniform: chi-square %.1f, counts %v", chi, counts)
	}
}

// A key prefix is 1 to 16 lowercase letters and digits: each end of each
// range is accepted, and its neighbours outside are refused, as are 0 and
// 17 characters. A ValidationError's text names its parameter when it has
// one.
func TestKeyPrefixBoundaries(t *testing.T) {
	for _, p := range []string{"a", "z", "0", "9", "az09", strings.Repeat("k", 16)} {
		if _, err := keys.New(memstore.New(), keys.WithKeyPrefix(p)); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	for _, p := range []string{"", strings.Repeat("k", 17), "`", "{", "/", ":", "A", "Z", "a_b", "a-b"} {
		if _, err := keys.New(memstore.New(), keys.WithKeyPrefix(p)); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	withParam := &keys.ValidationError{Param: "name", Message: "too long"}
	without := &keys.ValidationError{Message: "too long"}
	if !strings.Contains(withParam.Error(), "name") || strings.Contains(without.Error(), "invalid :") || withParam.Error() == without.Error() {
		t.Fatalf("ValidationError texts: %q, %q", withParam.Error(), without.Error())
	}
}
