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
	// The quota families with the leaf of their Graphite paths.
	quotaBytesLeaf, quotaPacketsLeaf, overQuotaLeaf *tree.Desc
	// columns are those of the table of every object: packets, bytes
	// and references; names its label names.
	columns []tree.Column
	names   []string

	mu           sync.Mutex
	notified     map[string]uint64
	watchRunning bool

	// objs keeps, by name, what the samples of each object share from one
	// snapshot to the next; gen is the latest snapshot's number. rows
	// are the rows of the table for the objects of the dump whose names
	// are rowNames, in that order. Snapshots may be taken concurrently,
	// hence objsMu.
	objsMu   sync.Mutex
	objs     map[string]*objectShared
	gen      uint64
	rows     []tree.Row
	rowNames []string
}

// objectShared is what the samples of one object share: its label values
// (whose text outputs render once) and the head of its Graphite paths,
// nfacct followed by the levels of its name.
type objectShared struct {
	labels *tree.Labels
	head   []string
	gen    uint64
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
	c := &Nfacct{
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
		objs:     make(map[string]*objectShared),
	}
	c.columns = []tree.Column{
		{Desc: c.packets.WithLeaf("pkts")},
		{Desc: c.bytes.WithLeaf("bytes")},
		{Desc: c.use, NoGraphite: true},
	}
	c.names = labels
	c.quotaBytesLeaf = c.quotaBytes.WithLeaf("quota_bytes")
	c.quotaPacketsLeaf = c.quotaPackets.WithLeaf("quota_packets")
	c.overQuotaLeaf = c.overQuota.WithLeaf("over_quota")
	return c, nil
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

// shared returns what the samples of the object name share, made at its
// first snapshot. c.objsMu must be held.
func (c *Nfacct) shared(name string) *objectShared {
	sh := c.objs[name]
	if sh == nil {
		// The dots of the name make levels, as ulogd2's GRAPHITE output
		// writes them.
		head := make([]string, 1, 2+strings.Count(name, "."))
		head[0] = "nfacct"
		for level := range strings.SplitSeq(name, ".") {
			head = append(head, level)
		}
		sh = &objectShared{labels: tree.NewLabels(c.labelValues(name)...), head: head}
		c.objs[name] = sh
	}
	sh.gen = c.gen
	return sh
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

	b.Add(c.objects, float64(len(objs)), []string{"exporter", "nfacct", "objects"})
	c.objsMu.Lock()
	defer c.objsMu.Unlock()
	c.gen++
	// Every object is a row of the table: packets, bytes, references.
	// The rows are made again when the objects listed changed.
	same := len(objs) == len(c.rowNames)
	for i := 0; same && i < len(objs); i++ {
		same = objs[i].Name == c.rowNames[i]
	}
	if !same {
		rows := make([]tree.Row, len(objs))
		names := make([]string, len(objs))
		for i, o := range objs {
			sh := c.shared(o.Name)
			rows[i] = tree.Row{Labels: sh.labels, Path: sh.head[1:]}
			names[i] = o.Name
		}
		c.rows, c.rowNames = rows, names
	}
	values := make([]float64, 0, len(c.columns)*len(objs))
	for _, o := range objs {
		values = append(values, float64(o.Packets), float64(o.Bytes), float64(o.Use))
	}
	b.AddTable(&tree.Table{Columns: c.columns, Names: c.names, Prefix: []string{"nfacct"}, Rows: c.rows, Values: values})
	// Quotas, for the objects that have one.
	for _, o := range objs {
		if !o.HasQuota() {
			continue
		}
		sh := c.shared(o.Name)
		quota := c.quotaBytesLeaf
		if o.QuotaUnit() == "packets" {
			quota = c.quotaPacketsLeaf
		}
		b.AddShared(quota, float64(o.Quota), sh.head, sh.labels)
		over := 0.0
		if o.OverQuota() {
			over = 1
		}
		b.AddShared(c.overQuotaLeaf, over, sh.head, sh.labels)
		if watching {
			b.AddShared(c.notifications, float64(notified[o.Name]), nil, sh.labels)
		}
	}
	// Forget the objects that are gone.
	if !same {
		for name, sh := range c.objs {
			if sh.gen != c.gen {
				delete(c.objs, name)
			}
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
