package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The quickstart serves the demo: a bootstrap key that whoami knows, and
// a clean shutdown when its context ends.
func TestQuickstartServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0"}, pw, io.Discard, func(a net.Addr) { addrs <- a })
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "bootstrap key: txc_test_") {
		t.Fatalf("first line %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	key := strings.TrimSpace(strings.TrimPrefix(line, "bootstrap key: "))
	var addr net.Addr
	select {
	case addr = <-addrs:
	case <-time.After(10 * time.Second):
		t.Fatal("not listening after 10 s")
	}
	req, _ := http.NewRequest("GET", "http://"+addr.String()+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var who struct {
		AccountID   string   `json:"account_id"`
		Environment string   `json:"environment"`
		Permissions []string `json:"permissions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&who)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || who.AccountID != "acct_demo" || who.Environment != "test" || len(who.Permissions) != 14 {
		t.Fatalf("whoami: %d %+v %v", resp.StatusCode, who, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// The README's first command builds nothing outside the standard library,
// this module and its two dependencies (uuid, and golang.org/x/crypto with
// the golang.org/x/sys it needs), so that it starts in a minute on a
// machine with an empty build cache.
func TestQuickstartDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{"github.com/txcloud/keys", "github.com/google/uuid", "golang.org/x/crypto/", "golang.org/x/sys/"}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, strings.TrimSuffix(a, "/")+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("cmd/quickstart builds %s", pkg)
		}
	}
	if n < 5 {
		t.Fatalf("go list found %d packages: it listed nothing useful", n)
	}
}
