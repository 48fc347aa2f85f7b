package graphite

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
)

// The errors New and the parsers wrap; tests check them with errors.Is.
var (
	errMode        = errors.New("invalid graphite mode")
	errBacklogSize = errors.New("invalid graphite backlog size")
	errAddress     = errors.New("invalid graphite address")
	errInterval    = errors.New("invalid graphite interval")
	errTimeout     = errors.New("invalid graphite timeout")
	errBacklog     = errors.New("invalid graphite backlog limits")
	errWindow      = errors.New("invalid graphite resend window")
	errSource      = errors.New("no graphite source")
	errRegister    = errors.New("cannot register graphite metrics")
	errRunning     = errors.New("graphite writer already run")
)

// The defaults of the flags that size the queues. 500,000 points, the five
// samples of 100,000 conntrack series, take 42 MB of plaintext lines (see
// BENCHMARKS.md): the backlog holds six such snapshots. The resend window
// keeps them compressed, about 4.3 MiB each: five minutes of them at the
// default interval, more than a carbon-cache that keeps up holds in memory.
const (
	DefaultBacklogSize      = "256MiB"
	DefaultResendWindow     = 5 * time.Minute
	DefaultResendWindowSize = "32MiB"
)

// Mode selects how counter values are sent.
type Mode int

const (
	// Cumulative sends every value as it is; it is the default.
	Cumulative Mode = iota
	// Delta sends, for counters, the increase since the previous snapshot.
	// Gauges are sent as they are.
	Delta
)

// String returns the name ParseMode accepts for m.
func (m Mode) String() string {
	switch m {
	case Cumulative:
		return "cumulative"
	case Delta:
		return "delta"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode returns the Mode named s: "cumulative" or "delta".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "cumulative":
		return Cumulative, nil
	case "delta":
		return Delta, nil
	}
	return 0, fmt.Errorf("%w %q: want \"cumulative\" or \"delta\"", errMode, s)
}

// ParseBacklogSize parses the size of the backlog. A plain integer such as
// "100000" is a number of points; a size with a unit such as "64MiB", "512KB"
// or "1GiB" is a number of bytes of formatted lines. Units are powers of 1024
// whether written KiB or KB. Exactly one of points and bytes is set, and it is
// greater than zero.
func ParseBacklogSize(s string) (points, bytes int, err error) {
	t := strings.TrimSpace(s)
	if t != "" && strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' }) < 0 {
		n, err := strconv.Atoi(t)
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("%w %q: want a positive number of points or a size such as 64MiB", errBacklogSize, s)
		}
		return n, 0, nil
	}
	b, err := units.ParseBase2Bytes(t)
	if err != nil || b <= 0 || int64(b) > math.MaxInt {
		return 0, 0, fmt.Errorf("%w %q: want a positive number of points or a size such as 64MiB", errBacklogSize, s)
	}
	return 0, int(b), nil
}

// ParseWindowSize parses the size of the resend window, such as "64MiB",
// "512KB", or "0" to turn resends off. Units are powers of 1024 whether
// written KiB or KB, and a size other than 0 needs one.
func ParseWindowSize(s string) (int, error) {
	b, err := units.ParseBase2Bytes(strings.TrimSpace(s))
	if err != nil || b < 0 || int64(b) > math.MaxInt {
		return 0, fmt.Errorf("%w %q: want a size such as 64MiB, or 0", errWindow, s)
	}
	return int(b), nil
}

// Config configures a Writer.
type Config struct {
	// Address is the host:port of carbon's plaintext listener.
	Address string
	// Prefix is put before every path, for example "netfilter". It may hold
	// several levels separated by dots; each level is sanitised and empty
	// levels are dropped.
	Prefix string
	// Interval is how often a snapshot is taken and queued.
	Interval time.Duration
	// Timeout bounds dialing carbon; a connection on which carbon's kernel
	// acknowledges nothing for Timeout has stalled and is reset. When the
	// Writer stops, it bounds the final snapshot and the flush together.
	Timeout time.Duration
	// BacklogPoints is the most points kept that carbon's kernel has not
	// acknowledged yet; 0 means no limit on the number of points.
	BacklogPoints int
	// BacklogBytes is the most bytes of formatted lines kept that carbon's
	// kernel has not acknowledged yet; 0 means no limit on bytes. At least
	// one of BacklogPoints and BacklogBytes must be greater than zero. The
	// limits should hold several snapshots: the lines of a snapshot are all
	// queued at once, and a snapshot larger than the limits loses its
	// oldest lines even when carbon keeps up.
	BacklogBytes int
	// ResendWindow is how long points are kept once carbon's kernel has
	// acknowledged them, to be sent again, before the backlog, after a
	// connection that ended in failure: carbon-cache keeps points in memory
	// before it writes them, and loses them when it dies. 0 turns resends
	// off.
	ResendWindow time.Duration
	// ResendWindowBytes bounds the memory the points kept for resending
	// take, compressed; the oldest are forgotten first. 0 turns resends off.
	ResendWindowBytes int
	// Mode selects how counters are sent; the zero value is Cumulative.
	Mode Mode
	// Tagged sends Graphite 1.1 tagged series, name;tag=value, instead of
	// dotted paths: the name is the prefix and the Prometheus metric name,
	// the tags are its labels.
	Tagged bool
	// Registerer receives the Writer's own metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Validate checks c, as New will.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate checks c and returns it with its defaults filled in.
func (c Config) validate() (Config, error) {
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return c, fmt.Errorf("%w %q: %w", errAddress, c.Address, err)
	}
	if host == "" {
		return c, fmt.Errorf("%w %q: missing host", errAddress, c.Address)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return c, fmt.Errorf("%w %q: port must be a number from 1 to 65535", errAddress, c.Address)
	}
	if c.Interval <= 0 {
		return c, fmt.Errorf("%w %v: must be greater than zero", errInterval, c.Interval)
	}
	if c.Timeout <= 0 {
		return c, fmt.Errorf("%w %v: must be greater than zero", errTimeout, c.Timeout)
	}
	if c.BacklogPoints < 0 || c.BacklogBytes < 0 || (c.BacklogPoints == 0 && c.BacklogBytes == 0) {
		return c, fmt.Errorf("%w (%d points, %d bytes): neither may be negative and at least one must be greater than zero",
			errBacklog, c.BacklogPoints, c.BacklogBytes)
	}
	if c.ResendWindow < 0 || c.ResendWindowBytes < 0 {
		return c, fmt.Errorf("%w (%v, %d bytes): neither may be negative", errWindow, c.ResendWindow, c.ResendWindowBytes)
	}
	if c.Mode != Cumulative && c.Mode != Delta {
		return c, fmt.Errorf("%w %v", errMode, c.Mode)
	}
	return c, nil
}
