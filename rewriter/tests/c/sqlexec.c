/* An embedding program (issue 10): reads an SQL file and runs all of it through ONE
 * sqlite3_exec call, printing the rows. Linked by rewriter/tests/oracle.rs against the
 * realworld fixture's SQLite object.   usage: sqlexec DB SQLFILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sqlite3.h"

static int row(void *arg, int n, char **val, char **col)
{
    (void)arg;
    (void)col;
    for (int i = 0; i < n; i++)
        printf("%s%s", i ? "|" : "", val[i] ? val[i] : "");
    putchar('\n');
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: sqlexec DB SQLFILE\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *sql = malloc(cap);
    size_t got;
    while (sql && (got = fread(sql + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap)
            sql = realloc(sql, cap *= 2);
    }
    fclose(f);
    if (!sql)
        return 1;
    sql[len] = 0;
    sqlite3 *db;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
        fprintf(stderr, "sqlexec: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, row, NULL, &err);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "sqlexec: %s\n", err ? err : "error");
        sqlite3_free(err);
    }
    sqlite3_close(db);
    free(sql);
    return rc != SQLITE_OK;
}
