package portal

import "testing"

// TestLoopback: only a Host naming this machine lets a cookie go without
// Secure; every other name, or an address elsewhere, keeps it.
func TestLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "127.0.0.1": true, "127.0.0.1:8080": true, "127.1.2.3:80": true,
		"[::1]": true, "[::1]:8080": true, "::1": true,
		"": false, "example.com": false, "localhost.example.com": false, "10.0.0.1:8080": false, "[::2]:80": false,
		"0.0.0.0": false, "192.0.2.1": false, "[::ffff:10.0.0.1]": false,
	} {
		if got := loopback(host); got != want {
			t.Errorf("loopback(%q) = %v, want %v", host, got, want)
		}
	}
}
