module github.com/freezeframe/freezeframe/services/snapshotter

go 1.26.0

replace (
	github.com/freezeframe/freezeframe/pkg/events => ../../pkg/events
	github.com/freezeframe/freezeframe/pkg/service => ../../pkg/service
	github.com/freezeframe/freezeframe/pkg/workload => ../../pkg/workload
)

require (
	github.com/kubernetes-csi/external-snapshotter/client/v8 v8.7.0 // indirect
	k8s.io/client-go v0.37.2 // indirect
)
