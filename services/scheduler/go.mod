module github.com/freezeframe/freezeframe/services/scheduler

go 1.26.0

replace (
	github.com/freezeframe/freezeframe/pkg/events => ../../pkg/events
	github.com/freezeframe/freezeframe/pkg/service => ../../pkg/service
	github.com/freezeframe/freezeframe/pkg/workload => ../../pkg/workload
)
