//go:build !mutation

package buildtag

// Mutation reports the mutation run's build (-tags mutation).
const Mutation = false
