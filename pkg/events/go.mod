module github.com/freezeframe/freezeframe/pkg/events

go 1.26.0
