package keys

// WithValidChecksum replaces key's checksum with the right one, to make
// well-formed keys that were never issued. The checksum is public by
// design: anyone can do this, which is why a valid checksum proves nothing
// beyond "not a typo".
func WithValidChecksum(key string) string {
	body := key[:len(key)-checksumChars]
	sum, _ := crcUpdate(0, body)
	return string(appendChecksum([]byte(body), sum))
}
