package sharedspec

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

// The committed seed must be the shared spec, byte for byte. Without
// ../shared beside the repository (a plain clone) there is nothing to
// compare, and the test skips; KEYS_REQUIRE_SHARED_SPEC=1 (set by .ci/run,
// which has ../shared) makes that a failure instead.
func TestSeedIsTheSharedSpec(t *testing.T) {
	shared, err := os.ReadFile("../../../shared/spec/devex-create-key.yaml")
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("KEYS_REQUIRE_SHARED_SPEC") == "" {
		neverCache(t)
		t.Skip("../shared/spec/devex-create-key.yaml is not beside the repository: nothing to compare the committed seed with")
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile("../../api/txcloud-devex-create-key.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, shared) {
		t.Fatalf("%s differs from ../shared/spec/devex-create-key.yaml: copy the shared file over it", "api/txcloud-devex-create-key.yaml")
	}
}

// neverCache keeps go test from caching this run's result: a skip must
// not be reported later as "ok (cached)". go test does not recheck files
// outside the module (../shared is), so a comparison that skipped would
// stay cached after the file appeared. It caches no result whose inputs
// include a file of the module changed in the last two seconds: this one
// is written on every skip (it is in .gitignore). KEYS_REQUIRE_SHARED_SPEC=1
// makes the test fail instead of skipping; .ci/run sets it.
func neverCache(t *testing.T) {
	const name = ".uncached-run"
	if err := os.WriteFile(name, []byte(t.Name()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
