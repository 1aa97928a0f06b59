package memstore_test

import (
	"context"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/keystest"
	"github.com/txcloud/keys/memstore"
)

func TestConformance(t *testing.T) {
	keystest.Run(t, func(*testing.T) keys.Store { return memstore.New() })
}

func BenchmarkLookupDigest(b *testing.B) {
	s := memstore.New()
	var hs []keys.Digest
	for range 100_000 {
		r := keystest.NewRecord(b)
		hs = append(hs, r.Digest)
		if err := s.Write(context.Background(), keys.Write{Insert: r}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
}

// Tables grow by doubling while readers search them without locks: every
// record stays findable, and absent digests end their probe.
func TestGrowthUnderConcurrentReads(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	var hs []keys.Digest
	for range 100 {
		r := keystest.NewRecord(t)
		hs = append(hs, r.Digest)
		if err := s.Write(ctx, keys.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20_000 {
			if _, err := s.LookupDigest(ctx, hs[i%len(hs)]); err != nil {
				t.Error("a record went missing while the table grew")
				return
			}
		}
	}()
	for range 5_000 {
		r := keystest.NewRecord(t)
		h := r.Digest
		if err := s.Write(ctx, keys.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupDigest(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	var absent keys.Digest
	for i := range 1000 {
		absent[0], absent[8], absent[9] = byte(i), byte(i>>8), 0xAA
		if _, err := s.LookupDigest(ctx, absent); err != keys.ErrNotFound {
			t.Fatalf("absent digest: %v", err)
		}
	}
}
