package collector

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/netfilter-exporter/netfilter_exporter/nfacct"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

var (
	errLabelName = errors.New("invalid label name")
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// NfacctLister lists nfacct objects; *nfacct.Conn is one.
type NfacctLister interface {
	List(ctx context.Context) ([]nfacct.Object, error)
}

// OverQuotaReceiver delivers the kernel's over-quota notifications;
// *nfacct.Listener is one.
type OverQuotaReceiver interface {
	Receive(ctx context.Context) ([]nfacct.Object, error)
}

// NfacctConfig configures the nfacct collector.
type NfacctConfig struct {
	// NameLabels, when set, splits each object name on Separator into these
	// labels, in order; the last label takes the rest of the name. The name
	// label is kept, so series stay unique.
	NameLabels []string
	// Separator splits names for NameLabels; "." when empty.
	Separator string
}

// Nfacct collects the counters and quotas of nfacct objects.
type Nfacct struct {
	src NfacctLister
	cfg NfacctConfig

	packets, bytes, overQuota, use, objects, notifications *tree.Desc
	// quotaBytes and quotaPackets: one name per unit, as the kernel holds
	// a quota in the unit of the object's flags.
	quotaBytes, quotaPackets *tree.Desc

	mu           sync.Mutex
	notified     map[string]uint64
	watchRunning bool
}

// Validate checks the configuration: label names must be valid, unique and
// not name.
func (cfg NfacctConfig) Validate() error {
	seen := map[string]bool{"name": true}
	for _, l := range cfg.NameLabels {
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") {
			return fmt.Errorf("%w %q in --nfacct.name-labels", errLabelName, l)
		}
		if seen[l] {
			return fmt.Errorf("%w %q in --nfacct.name-labels: used twice or reserved", errLabelName, l)
		}
		seen[l] = true
	}
	return nil
}

// NewNfacct returns an nfacct collector reading from src.
func NewNfacct(src NfacctLister, cfg NfacctConfig) (*Nfacct, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Separator == "" {
		cfg.Separator = "."
	}
	labels := append([]string{"name"}, cfg.NameLabels...)
	return &Nfacct{
		src: src,
		cfg: cfg,
		packets: tree.NewDesc(namespace+"_nfacct_packets_total",
			"Packets counted by the nfacct object, as the kernel holds them.", tree.Counter, labels...),
		bytes: tree.NewDesc(namespace+"_nfacct_bytes_total",
			"Bytes counted by the nfacct object, as the kernel holds them.", tree.Counter, labels...),
		quotaBytes: tree.NewDesc(namespace+"_nfacct_quota_bytes",
			"Quota of the nfacct object, for an object whose quota counts bytes.", tree.Gauge, labels...),
		quotaPackets: tree.NewDesc(namespace+"_nfacct_quota_packets",
			"Quota of the nfacct object, for an object whose quota counts packets.", tree.Gauge, labels...),
		overQuota: tree.NewDesc(namespace+"_nfacct_over_quota",
			"Whether the nfacct quota object has passed its quota (1) or not (0).", tree.Gauge, labels...),
		use: tree.NewDesc(namespace+"_nfacct_references",
			"Kernel reference count of the nfacct object: 1 for the object plus 1 per rule using it.", tree.Gauge, labels...),
		objects: tree.NewDesc(namespace+"_nfacct_objects",
			"Number of nfacct objects.", tree.Gauge),
		notifications: tree.NewDesc(namespace+"_nfacct_over_quota_notifications_total",
			"Over-quota notifications the kernel sent for the nfacct object since the exporter started.", tree.Counter, labels...),
		notified: make(map[string]uint64),
	}, nil
}

// labelValues returns the label values of an object name.
func (c *Nfacct) labelValues(name string) []string {
	n := len(c.cfg.NameLabels)
	vals := make([]string, 1, 1+n)
	vals[0] = name
	// As strings.SplitN(name, sep, n), the last label taking the rest of
	// the name, without its allocation; with fewer parts than labels, the
	// last ones read "".
	rest := name
	for i := range n {
		part := rest
		if i < n-1 {
			part, rest, _ = strings.Cut(rest, c.cfg.Separator)
		}
		vals = append(vals, part)
	}
	return vals
}

// graphitePaths returns the Graphite paths of an object's values, one per
// leaf (at most four), from one allocation: the dots of the name make
// levels, as ulogd2's GRAPHITE output writes them.
func graphitePaths(name string, leaves ...string) (paths [4][]string) {
	levels := 2 + strings.Count(name, ".")
	backing := make([]string, 0, levels*len(leaves))
	for i, leaf := range leaves {
		start := len(backing)
		backing = append(backing, "nfacct")
		for level := range strings.SplitSeq(name, ".") {
			backing = append(backing, level)
		}
		backing = append(backing, leaf)
		paths[i] = backing[start:len(backing):len(backing)]
	}
	return paths
}

// Update dumps the nfacct objects and adds their samples to b.
func (c *Nfacct) Update(ctx context.Context, b *tree.Builder) error {
	objs, err := c.src.List(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	notified := make(map[string]uint64, len(c.notified))
	for k, v := range c.notified {
		notified[k] = v
	}
	watching := c.watchRunning
	c.mu.Unlock()

	b.Add(c.objects, float64(len(objs)), []string{"nfacct", "objects"})
	for _, o := range objs {
		lv := c.labelValues(o.Name)
		if !o.HasQuota() {
			p := graphitePaths(o.Name, "pkts", "bytes")
			b.Add(c.packets, float64(o.Packets), p[0], lv...)
			b.Add(c.bytes, float64(o.Bytes), p[1], lv...)
			b.Add(c.use, float64(o.Use), nil, lv...)
			continue
		}
		quota, leaf := c.quotaBytes, "quota_bytes"
		if o.QuotaUnit() == "packets" {
			quota, leaf = c.quotaPackets, "quota_packets"
		}
		p := graphitePaths(o.Name, "pkts", "bytes", leaf, "over_quota")
		b.Add(c.packets, float64(o.Packets), p[0], lv...)
		b.Add(c.bytes, float64(o.Bytes), p[1], lv...)
		b.Add(c.use, float64(o.Use), nil, lv...)
		b.Add(quota, float64(o.Quota), p[2], lv...)
		over := 0.0
		if o.OverQuota() {
			over = 1
		}
		b.Add(c.overQuota, over, p[3], lv...)
		if watching {
			b.Add(c.notifications, float64(notified[o.Name]), nil, lv...)
		}
	}
	return nil
}

// WatchOverQuota counts the notifications r delivers until ctx is done (it
// then returns nil) or a receive fails. Run it with a retry (task.Retry). Counts are served for quota objects that still exist.
func (c *Nfacct) WatchOverQuota(ctx context.Context, r OverQuotaReceiver) error {
	c.mu.Lock()
	c.watchRunning = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.watchRunning = false
		c.mu.Unlock()
	}()
	for {
		objs, err := r.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receiving nfacct over-quota notifications: %w", err)
		}
		c.mu.Lock()
		for _, o := range objs {
			c.notified[o.Name]++
		}
		c.mu.Unlock()
	}
}
