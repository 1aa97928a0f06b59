// Package buildtag tells tests how they were built: Race under the race
// detector (go test -race), Mutation in the mutation run (-tags mutation,
// scripts/mutation). Tests whose figures mean nothing under the race
// detector (a latency bound), or that are slow and guard no rule of their
// own, read them to run smaller or skip; .ci/run runs them in full in a
// step of their own.
package buildtag
