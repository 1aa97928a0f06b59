package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildDemo builds the demo binary into a temporary directory.
func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keysdemo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// demoProcess is the demo binary running: its bootstrap key, its address,
// and its log, read until the process ends (logsDone).
type demoProcess struct {
	cmd       *exec.Cmd
	key, addr string
	logsDone  chan struct{}
	mu        sync.Mutex
	logs      strings.Builder
}

func (p *demoProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// startBinary runs bin on a free port with args, and waits for its
// bootstrap key and address. The process is killed when the test ends.
func startBinary(t *testing.T, bin string, args ...string) *demoProcess {
	t.Helper()
	p := &demoProcess{cmd: exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, args...)...), logsDone: make(chan struct{})}
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	p.key = strings.TrimSpace(strings.TrimPrefix(line, "bootstrap key: "))
	addrCh := make(chan string, 1)
	go func() {
		defer close(p.logsDone)
		addrRE := regexp.MustCompile(`addr=http://(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
	}()
	select {
	case p.addr = <-addrCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the demo did not report its address")
	}
	return p
}
