package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// whoami answers the key's owner and metadata; with --github-keys, a
// signed alert naming a key revokes it, as the README shows with openssl.
func TestDemoOwnerMetadataAndLeakReceiver(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": "demo-key", "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}})
	file := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	base, bootstrap, logs, stop := startDemo(t, "--github-keys", file)
	resp, created := call(t, "POST", base+"/v1/developers/keys", bootstrap,
		`{"name":"svc","environment":"test","owner_id":"cust_1","metadata":{"plan":"pro"}}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	key := created["key"].(string)
	resp, who := call(t, "GET", base+"/v1/whoami", key, "")
	if resp.StatusCode != 200 || who["owner_id"] != "cust_1" || who["metadata"].(map[string]any)["plan"] != "pro" {
		t.Fatalf("whoami: %d %v", resp.StatusCode, who)
	}
	body := []byte(`[{"token":"` + key + `","type":"txcloud_api_key","url":"https://github.com/o/r/blob/1/.env","source":"content"}]`)
	sum := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	req, _ := http.NewRequest("POST", base+"/v1/secret-scanning/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Github-Public-Key-Identifier", "demo-key")
	req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("alert: %d", r.StatusCode)
	}
	if resp, body := call(t, "GET", base+"/v1/whoami", key, ""); resp.StatusCode != 401 || body["error"].(map[string]any)["code"] != "key_revoked" {
		t.Fatalf("the reported key: %d %v", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "key leaked") || !strings.Contains(out, "https://github.com/o/r/blob/1/.env") || strings.Contains(out, key[9:]) {
		t.Fatalf("the leak is not logged, or the key is:\n%s", out)
	}
}
