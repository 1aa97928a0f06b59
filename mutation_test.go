//go:build mutation

package keys_test

// mutation: built with -tags mutation, as the mutation run (scripts/mutation)
// is: the slow tests that guard no rule of their own skip.
const mutation = true
