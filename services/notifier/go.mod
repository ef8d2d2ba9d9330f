module github.com/freezeframe/freezeframe/services/notifier

go 1.26.0
