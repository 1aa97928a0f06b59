package keys

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"
)

const (
	// maxMetadataBytes bounds a key's metadata, compacted.
	maxMetadataBytes = 4096
	// maxMetadataDepth bounds how deep metadata nests: the top object is
	// depth 1.
	maxMetadataDepth = 8
	// maxMetadataInput bounds the metadata as sent, white space included,
	// before it is parsed.
	maxMetadataInput = 64 << 10
	// maxOwnerIDLen is the longest owner_id, in bytes.
	maxOwnerIDLen = 128
)

// validateMetadata checks metadata and returns it compacted: a JSON object
// of valid UTF-8, nested at most maxMetadataDepth deep, with no name twice
// in one object (parsers disagree on which copy wins), at most
// maxMetadataBytes once compacted. Empty input is no metadata.
func validateMetadata(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	bad := func(msg string) error { return invalid("metadata", "%s", msg) }
	if len(raw) > maxMetadataInput {
		return nil, bad("metadata must be at most 4096 bytes of compact JSON")
	}
	if !utf8.Valid(raw) {
		return nil, bad("metadata must be valid UTF-8")
	}
	// Compact first (it checks the syntax, and allocates only its
	// output), then walk at most maxMetadataBytes: a 64 KiB body of tiny
	// objects costs one pass, not a map for each.
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, bad("metadata must be valid JSON")
	}
	if buf.Len() > maxMetadataBytes {
		return nil, bad("metadata must be at most 4096 bytes of compact JSON")
	}
	out := buf.Bytes()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	// names[d] holds the names seen in the object open at depth d+1; nil
	// for an array.
	var names []map[string]struct{}
	expectName := false
	for first := true; ; first = false {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bad("metadata must be valid JSON")
		}
		if first && tok != json.Delim('{') {
			return nil, bad("metadata must be a JSON object")
		}
		if !first && len(names) == 0 {
			return nil, bad("metadata must be one JSON object")
		}
		if expectName {
			// Inside an object the decoder yields each name as a string
			// token, then the value.
			if name, ok := tok.(string); ok {
				seen := names[len(names)-1]
				if _, dup := seen[name]; dup {
					return nil, bad("metadata names a field twice in one object")
				}
				seen[name] = struct{}{}
				expectName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(names) == maxMetadataDepth {
				return nil, bad("metadata nests deeper than 8 levels")
			}
			var m map[string]struct{}
			if tok == json.Delim('{') {
				m = map[string]struct{}{}
			}
			names = append(names, m)
		case json.Delim('}'), json.Delim(']'):
			names = names[:len(names)-1]
		}
		expectName = len(names) > 0 && names[len(names)-1] != nil && dec.More()
	}
	return out, nil
}

// validateOwnerID checks an owner_id: 1 to 128 printable ASCII characters,
// no spaces, so that it is safe in a log line, a URL query and a header.
func validateOwnerID(id string) (string, error) {
	if id == "" {
		return "", invalid("owner_id", "owner_id must not be empty; leave it out instead")
	}
	if len(id) > maxOwnerIDLen {
		return "", invalid("owner_id", "owner_id must be at most %d characters", maxOwnerIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return "", invalid("owner_id", "owner_id may hold only printable ASCII characters without spaces")
		}
	}
	return id, nil
}
