package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"os/exec"
)

// Formats kept in names: their text is not at the call.
const (
	userQuery = "SELECT * FROM users WHERE name = '%s'"
	userURL   = "https://api.example.com/users/%s"
)

func handler(db *sql.DB) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host := r.URL.Query().Get("host")
		// ruleid: platform.go.shell-command-from-input
		out, _ := exec.Command("sh", "-c", "ping -c 1 "+host).Output()
		// ruleid: platform.go.sql-built-from-strings
		rows, _ := db.Query(fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", host))
		// ruleid: platform.go.sql-built-from-strings
		db.Exec("DELETE FROM users WHERE name = '" + host + "'")
		// ok: platform.go.sql-built-from-strings
		db.Query("SELECT * FROM users WHERE name = $1", host)
		// ok: platform.go.shell-command-from-input
		exec.Command("ping", "-c", "1", host).Run()
		_ = rows
		// ok: platform.go.sql-built-from-strings
		http.Get(baseURL + "/users/" + host)
		// ok: platform.go.sql-built-from-strings
		cache.Get(r.Context(), "user:"+host)
		q := "UPDATE users SET seen = now() WHERE name = '" + host + "'"
		// ruleid: platform.go.sql-built-from-strings
		db.ExecContext(r.Context(), q)
		// ruleid: platform.go.sql-built-from-strings
		sqlxDB.Get(&user, "SELECT * FROM users WHERE name = '"+host+"'")
		// ruleid: platform.go.sql-built-from-strings
		db.Query("SELECT " + col + " FROM users")
		// ruleid: platform.go.sql-format-from-a-name
		db.Query(fmt.Sprintf(userQuery, host))
		// ok: platform.go.sql-format-from-a-name
		http.Get(fmt.Sprintf(userURL, host))
		w.Write(out)
	}
}
