// Package sharedspec holds one test: the committed seed document
// (api/txcloud-devex-create-key.yaml) is ../shared/spec/devex-create-key.yaml,
// byte for byte, when that file is beside the repository. Without it the
// test skips and is never cached, so that "ok (cached)" never stands for a
// comparison that did not run; KEYS_REQUIRE_SHARED_SPEC=1 makes it fail
// instead, as .ci/run does.
package sharedspec
