module github.com/freezeframe/freezeframe/services/scheduler

go 1.26.0
