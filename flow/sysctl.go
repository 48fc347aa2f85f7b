package flow

import "github.com/netfilter-exporter/netfilter_exporter/ctnl"

// checkSysctls logs, or with Config.EnableAccounting sets, the sysctls that
// decide what conntrack accounting sees in the namespace netns.
func (p *Pipeline) checkSysctls(netns int) {
	live := p.agg.live != nil
	for _, st := range ctnl.AccountingSettings(netns, p.enable) {
		switch {
		case st.Switched:
			p.logger.Info("switched on for flows created from now on", "sysctl", st.Name)
		case st.Err != nil && p.enable:
			p.logger.Error("--conntrack.enable-accounting could not switch on a conntrack setting: "+lost(st.Name, live), "sysctl", st.Name, "err", st.Err)
		case st.Err != nil:
			p.logger.Warn("cannot check conntrack setting", "sysctl", st.Name, "err", st.Err)
		case !st.OK():
			p.logger.Warn(lost(st.Name, live)+"; set it to 1 or pass --conntrack.enable-accounting", "sysctl", st.Name, "value", st.Value)
		}
	}
}

// lost says what accounting misses while sysctl is not 1.
func lost(sysctl string, live bool) string {
	switch sysctl {
	case "net.netfilter.nf_conntrack_acct":
		return "conntrack setting is off: packet and byte counters will read 0"
	case "net.netfilter.nf_conntrack_timestamp":
		return "conntrack setting is off: flow durations will not be measured"
	}
	if live {
		return "flows created while no conntrack listener existed send no DESTROY event; live accounting counts them from table dumps, up to the last dump that saw them"
	}
	return "flows created while no conntrack listener existed (while the exporter was down) send no DESTROY event and are never counted with --conntrack.poll-interval=0"
}
