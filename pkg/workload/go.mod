module github.com/freezeframe/freezeframe/pkg/workload

go 1.26.0
