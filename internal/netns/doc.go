// Package netns opens the network namespace the exporter is told to watch
// (--netns), so that every kernel client can talk to it.
package netns
