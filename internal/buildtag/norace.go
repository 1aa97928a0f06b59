//go:build !race

package buildtag

// Race reports a build with the race detector.
const Race = false
