// Package spectest holds the tests that hold the HTTP adapter and the
// project's OpenAPI document (api/openapi.yaml) to each other, in both
// directions, and the document to the TXCloud seed
// (api/txcloud-devex-create-key.yaml, a byte-identical copy of
// ../shared/spec/devex-create-key.yaml). It is a module of its own so that
// the OpenAPI validator it uses (kin-openapi) stays out of the core
// module's requirements.
package spectest
