// The CMS demo's state in PostgreSQL (herald-cms-demo --postgres URL): projects, items,
// comments and notifications in tables, and every change written together with its
// notification into herald's outbox, in one transaction. herald::outbox::postgres (main.cpp)
// publishes what commits; a change that rolls back is never heard of.
//
// A demo's data layer: one blocking connection under a mutex (the CMS's own choice; the
// outbox consumer is asynchronous on herald's loop). A lost connection is made again at the
// next request.
#pragma once

#include <herald/outbox/postgres.hpp>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cms {

class database {
public:
    using json = nlohmann::json;
    explicit database(std::string url) : url_(std::move(url)) {}
    ~database() {
        if (c_) PQfinish(c_);
    }
    database(const database&) = delete;
    database& operator=(const database&) = delete;

    /// The tables (and herald's outbox), filled with `seed` the first time: a list of
    /// {id, name, items: [{id, title, status, editor}]}. Made at the first request that finds
    /// PostgreSQL up: the demo starts (and herald serves) while it is down.
    void init(json seed) {
        std::lock_guard<std::mutex> lock(mu_);
        seed_ = std::move(seed);
        try {
            prepare();
        } catch (const std::exception&) {
            // not yet: the next request tries again (and says why)
        }
    }

    json projects() {
        std::lock_guard<std::mutex> lock(mu_);
        prepare();
        return read_projects();
    }

    json notifications(const std::string& user) {
        std::lock_guard<std::mutex> lock(mu_);
        prepare();
        json out = json::array();
        for (auto& n : exec("SELECT id, text, at FROM (SELECT * FROM cms_notifications WHERE user_name = $1"
                            " ORDER BY id DESC LIMIT 200) n ORDER BY id", {user}))
            out.push_back(note_json(std::stoll(n[0]), user, n[1], std::stoll(n[2])));
        return out;
    }

    /// Sets an item's status and notifies `owner`, in one transaction with both outbox rows.
    /// @returns the item as it is now ({id, title, status, editor}); nothing for an unknown item.
    std::optional<json> set_status(int project, int item, const std::string& status, const std::string& editor,
                                   const std::string& owner, long long at,
                                   const std::function<std::string(const json& item)>& note_text) {
        std::lock_guard<std::mutex> lock(mu_);
        prepare();
        transaction t(*this);
        auto rows = exec("UPDATE cms_items SET status = $3, editor = $4 WHERE project = $1 AND id = $2 RETURNING title",
                         {std::to_string(project), std::to_string(item), status, editor});
        if (rows.empty()) return std::nullopt;
        json it = {{"id", item}, {"title", rows[0][0]}, {"status", status}, {"editor", editor}};
        outbox("projects", json{{"kind", "item"}, {"project", project}, {"item", it}, {"at", at}});
        add_note(owner, note_text(it), at);
        t.commit();
        return it;
    }

    void add_comment(int project, const std::string& author, const std::string& text, long long at) {
        std::lock_guard<std::mutex> lock(mu_);
        prepare();
        transaction t(*this);
        auto rows = exec("INSERT INTO cms_comments (project, author, text, at) SELECT $1, $2, $3, $4"
                         " WHERE EXISTS (SELECT 1 FROM cms_projects WHERE id = $1) RETURNING id",
                         {std::to_string(project), author, text, std::to_string(at)});
        if (rows.empty()) return;
        outbox("projects", comment_json(std::stoll(rows[0][0]), project, author, text, at));
        t.commit();
    }

    void notify(const std::string& user, const std::string& text, long long at) {
        std::lock_guard<std::mutex> lock(mu_);
        prepare();
        transaction t(*this);
        add_note(user, text, at);
        t.commit();
    }

    static json comment_json(long long id, int project, const std::string& author, const std::string& text, long long at) {
        return {{"kind", "comment"}, {"id", id}, {"project", project}, {"author", author}, {"text", text}, {"at", at}};
    }
    static json note_json(long long id, const std::string& user, const std::string& text, long long at) {
        return {{"id", id}, {"user", user}, {"text", text}, {"at", at}};
    }

private:
    void prepare() {
        if (prepared_) return;
        exec(herald::outbox::postgres::schema() +
             "CREATE TABLE IF NOT EXISTS cms_projects (id int PRIMARY KEY, name text NOT NULL);\n"
             "CREATE TABLE IF NOT EXISTS cms_items (project int REFERENCES cms_projects, id int, title text NOT NULL,"
             " status text NOT NULL, editor text NOT NULL, PRIMARY KEY (project, id));\n"
             "CREATE TABLE IF NOT EXISTS cms_comments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
             " project int NOT NULL, author text NOT NULL, text text NOT NULL, at bigint NOT NULL);\n"
             "CREATE TABLE IF NOT EXISTS cms_notifications (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
             " user_name text NOT NULL, text text NOT NULL, at bigint NOT NULL);\n",
             {});
        if (exec("SELECT count(*) FROM cms_projects", {})[0][0] != "0") {
            prepared_ = true;
            return;
        }
        exec("BEGIN", {});
        for (const auto& p : seed_) {
            exec("INSERT INTO cms_projects VALUES ($1, $2)", {p["id"].dump(), p["name"].get<std::string>()});
            for (const auto& i : p["items"])
                exec("INSERT INTO cms_items VALUES ($1, $2, $3, $4, $5)",
                     {p["id"].dump(), i["id"].dump(), i["title"].get<std::string>(), i["status"].get<std::string>(), i["editor"].get<std::string>()});
        }
        exec("COMMIT", {});
        prepared_ = true;
    }

    json read_projects() {
        json out = json::array();
        for (auto& p : exec("SELECT id, name FROM cms_projects ORDER BY id", {})) {
            json items = json::array(), comments = json::array();
            for (auto& i : exec("SELECT id, title, status, editor FROM cms_items WHERE project = $1 ORDER BY id", {p[0]}))
                items.push_back({{"id", std::stoi(i[0])}, {"title", i[1]}, {"status", i[2]}, {"editor", i[3]}});
            for (auto& c : exec("SELECT id, author, text, at FROM (SELECT * FROM cms_comments WHERE project = $1"
                                " ORDER BY id DESC LIMIT 20) c ORDER BY id", {p[0]}))
                comments.push_back(comment_json(std::stoll(c[0]), std::stoi(p[0]), c[1], c[2], std::stoll(c[3])));
            out.push_back({{"id", std::stoi(p[0])}, {"name", p[1]}, {"items", items}, {"comments", comments}});
        }
        return out;
    }

    // BEGIN now; ROLLBACK unless commit() ran (an exception, an unknown item).
    struct transaction {
        database& db;
        bool done = false;
        explicit transaction(database& d) : db(d) { db.exec("BEGIN", {}); }
        void commit() {
            db.exec("COMMIT", {});
            done = true;
        }
        ~transaction() {
            if (!done && db.c_ && PQstatus(db.c_) == CONNECTION_OK) PQclear(PQexec(db.c_, "ROLLBACK"));
        }
    };

    void add_note(const std::string& user, const std::string& text, long long at) {
        auto rows = exec("INSERT INTO cms_notifications (user_name, text, at) VALUES ($1, $2, $3) RETURNING id",
                         {user, text, std::to_string(at)});
        outbox("user." + user + ".notifications", note_json(std::stoll(rows[0][0]), user, text, at));
    }

    // The one line a CMS adds to its transaction.
    void outbox(const std::string& channel, const json& data) {
        exec("INSERT INTO herald_outbox (channel, data) VALUES ($1, $2)", {channel, data.dump()});
    }

    std::vector<std::vector<std::string>> exec(const std::string& sql, const std::vector<std::string>& params) {
        if (!c_ || PQstatus(c_) != CONNECTION_OK) {
            if (c_) PQfinish(c_);
            c_ = PQconnectdb(url_.c_str());
            PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);
            if (PQstatus(c_) != CONNECTION_OK) throw std::runtime_error(std::string("PostgreSQL: ") + PQerrorMessage(c_));
        }
        std::vector<const char*> values;
        for (auto& p : params) values.push_back(p.c_str());
        PGresult* r = params.empty() ? PQexec(c_, sql.c_str())
                                     : PQexecParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0);
        std::unique_ptr<PGresult, void (*)(PGresult*)> guard(r, PQclear);
        const auto st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            throw std::runtime_error(std::string("PostgreSQL: ") + (r ? PQresultErrorMessage(r) : PQerrorMessage(c_)));
        std::vector<std::vector<std::string>> rows;
        for (int i = 0; i < PQntuples(r); ++i) {
            rows.emplace_back();
            for (int j = 0; j < PQnfields(r); ++j) rows.back().emplace_back(PQgetvalue(r, i, j));
        }
        return rows;
    }

    std::string url_;
    PGconn* c_ = nullptr;
    std::mutex mu_;
    json seed_;
    bool prepared_ = false;
};

} // namespace cms
