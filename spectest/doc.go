// Package spectest holds the tests that validate real responses of the
// HTTP adapter against the TXCloud OpenAPI contract
// (../shared/spec/devex-create-key.yaml) and the project's own OpenAPI file
// (api/openapi.yaml). It is a module of its own so that the OpenAPI
// validator it uses (kin-openapi) stays out of the core module's
// requirements.
package spectest
