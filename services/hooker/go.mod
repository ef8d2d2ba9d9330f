module github.com/freezeframe/freezeframe/services/hooker

go 1.26.0
