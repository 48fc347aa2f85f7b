package ctnl_test

import (
	"strings"
	"testing"

	"github.com/netfilter-exporter/netfilter_exporter/ctnl"
)

// TestListenUnknownMethod checks that a bad method is refused by name.
func TestListenUnknownMethod(t *testing.T) {
	_, err := ctnl.Listen(&ctnl.ListenConfig{Method: "epoll"})
	if err == nil || !strings.Contains(err.Error(), `"epoll"`) {
		t.Fatalf("Listen with method epoll: %v, want an error naming it", err)
	}
}
