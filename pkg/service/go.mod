module github.com/freezeframe/freezeframe/pkg/service

go 1.26.0
