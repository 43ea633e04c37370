package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// A fresh relay exports its connection gauge for every transport at 0, so
// a dashboard or alert sees it serving before the first client arrives.
func TestMetricsConnectionsExportedBeforeAnyClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := newMetrics(reg)
	require.NoError(t, err)
	require.Equal(t, 3, testutil.CollectAndCount(reg, "switchboard_relay_connections"))
	families, err := reg.Gather()
	require.NoError(t, err)
	var labels []string
	for _, f := range families {
		if f.GetName() != "switchboard_relay_connections" {
			continue
		}
		for _, m := range f.GetMetric() {
			require.Zero(t, m.GetGauge().GetValue())
			labels = append(labels, m.GetLabel()[0].GetValue())
		}
	}
	require.ElementsMatch(t, []string{transportISSUN, transportNative, transportWebTransport}, labels)
}
