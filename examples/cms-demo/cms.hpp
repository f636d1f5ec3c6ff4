// The CMS of the demo: projects with items and comments, per-user notifications, and the
// publishes herald carries to the editors' pages. State lives in memory; every change is
// published after it is made, so that a page that resyncs (GET /api/...) sees at least as
// much as the messages it gets afterwards. With a database (--postgres), the state lives in
// PostgreSQL and each change commits with its outbox rows (database.hpp); herald's outbox
// consumer publishes them.
#pragma once

#include <herald.hpp>
#include <nlohmann/json.hpp>
#ifdef HERALD_DEMO_POSTGRES
#include "database.hpp"
#endif

#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace cms {

using json = nlohmann::json;

struct item {
    int id;
    std::string title;
    std::string status;  // draft, in review, approved, published
    std::string editor;
};

struct project {
    int id;
    std::string name;
    std::vector<item> items;
    std::vector<json> comments;
};

inline const std::vector<std::string> users = {"alice", "bob"};

#ifndef HERALD_DEMO_POSTGRES
class database;  // the PostgreSQL store exists only in a build with herald::postgres
#endif

/// The CMS's state and its edits. `publish` is herald's (server.publish): the CMS calls it
/// after each change. With `db`, the state is the database's and nothing is published here:
/// each change writes its outbox rows in its transaction. Database errors throw.
class store {
public:
    using publish_function = std::function<void(const std::string& channel, const json& data)>;

    explicit store(publish_function publish, database* db = nullptr) : publish_(std::move(publish)), db_(db) {
        projects_ = {
            {1, "Spring campaign", {{1, "Landing page copy", "draft", "alice"}, {2, "Hero image", "in review", "bob"}, {3, "Newsletter", "draft", "alice"}}, {}},
            {2, "Product catalogue", {{1, "Winter collection", "approved", "bob"}, {2, "Price list", "draft", "alice"}}, {}},
            {3, "Company blog", {{1, "Interview: our CTO", "in review", "alice"}, {2, "Release notes 4.2", "draft", "bob"}, {3, "Hiring post", "published", "bob"}}, {}},
        };
#ifdef HERALD_DEMO_POSTGRES
        if (db_) db_->init(memory_projects());  // the first time: the same projects
#endif
    }

    json projects() const {
#ifdef HERALD_DEMO_POSTGRES
        if (db_) return db_->projects();
#endif
        return memory_projects();
    }

    json notifications(const std::string& user) const {
#ifdef HERALD_DEMO_POSTGRES
        if (db_) return db_->notifications(user);
#endif
        std::lock_guard<std::mutex> lock(mu_);
        json out = json::array();
        for (const auto& n : notifications_)
            if (n["user"] == user) out.push_back(n);
        return out;
    }

    /// An editor sets an item's status. @returns false for an unknown project or item.
    bool set_status(int project_id, int item_id, const std::string& status, const std::string& editor) {
        const std::string owner = editor == "alice" ? "bob" : "alice";  // the other editor hears of it
#ifdef HERALD_DEMO_POSTGRES
        if (db_)
            return db_->set_status(project_id, item_id, status, editor, owner, now(), [&](const json& it) {
                return status_text(editor, it["title"].get<std::string>(), status);
            }).has_value();
#endif
        json change, note;
        {
            std::lock_guard<std::mutex> lock(mu_);
            item* it = find(project_id, item_id);
            if (!it) return false;
            it->status = status;
            it->editor = editor;
            change = {{"kind", "item"}, {"project", project_id}, {"item", to_json(*it)}, {"at", now()}};
            note = make_note(owner, status_text(editor, it->title, status));
        }
        publish_("projects", change);
        publish_("user." + owner + ".notifications", note);
        return true;
    }

    void add_comment(int project_id, const std::string& author, const std::string& text) {
#ifdef HERALD_DEMO_POSTGRES
        if (db_) return db_->add_comment(project_id, author, text, now());
#endif
        json c;
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (auto& p : projects_)
                if (p.id == project_id) {
                    c = {{"kind", "comment"}, {"id", ++comment_id_}, {"project", project_id}, {"author", author}, {"text", text}, {"at", now()}};
                    p.comments.push_back(c);
                    if (p.comments.size() > 20) p.comments.erase(p.comments.begin());
                }
        }
        if (!c.is_null()) publish_("projects", c);
    }

    void notify(const std::string& user, const std::string& text) {
#ifdef HERALD_DEMO_POSTGRES
        if (db_) return db_->notify(user, text, now());
#endif
        json n;
        {
            std::lock_guard<std::mutex> lock(mu_);
            n = make_note(user, text);
        }
        publish_("user." + user + ".notifications", n);
    }

    /// One random edit, as the other editors of a busy CMS would make.
    void simulate_once() {
        static const std::vector<std::string> statuses = {"draft", "in review", "approved", "published"};
        static const std::vector<std::string> remarks = {
            "Can we shorten the intro?", "Approved from my side.", "Image needs alt text.",
            "Legal checked the wording.", "Moved the deadline to Friday.", "Typo in the second paragraph."};
        std::uniform_int_distribution<int> action(0, 9), pick(0, 1000);
        const int a = action(rng_);
        const std::string& who = users[static_cast<std::size_t>(pick(rng_)) % users.size()];
        if (a < 5) {
            int pid, iid;
            {
                std::lock_guard<std::mutex> lock(mu_);
                const auto& p = projects_[static_cast<std::size_t>(pick(rng_)) % projects_.size()];
                pid = p.id;
                iid = p.items[static_cast<std::size_t>(pick(rng_)) % p.items.size()].id;
            }
            set_status(pid, iid, statuses[static_cast<std::size_t>(pick(rng_)) % statuses.size()], who);
        } else if (a < 8) {
            add_comment(1 + pick(rng_) % 3, who, remarks[static_cast<std::size_t>(pick(rng_)) % remarks.size()]);
        } else {
            notify(who, "Reminder: " + std::to_string(1 + pick(rng_) % 5) + " item(s) wait for your review");
        }
    }

private:
    json memory_projects() const {
        std::lock_guard<std::mutex> lock(mu_);
        json out = json::array();
        for (const auto& p : projects_) out.push_back(to_json(p));
        return out;
    }
    static std::string status_text(const std::string& editor, const std::string& title, const std::string& status) {
        return editor + " set \"" + title + "\" to " + status;
    }
    static long long now() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
    static json to_json(const item& i) {
        return {{"id", i.id}, {"title", i.title}, {"status", i.status}, {"editor", i.editor}};
    }
    static json to_json(const project& p) {
        json items = json::array();
        for (const auto& i : p.items) items.push_back(to_json(i));
        return {{"id", p.id}, {"name", p.name}, {"items", items}, {"comments", p.comments}};
    }
    item* find(int pid, int iid) {
        for (auto& p : projects_)
            if (p.id == pid)
                for (auto& i : p.items)
                    if (i.id == iid) return &i;
        return nullptr;
    }
    json make_note(const std::string& user, const std::string& text) {
        json n = {{"id", ++note_id_}, {"user", user}, {"text", text}, {"at", now()}};
        notifications_.push_back(n);
        if (notifications_.size() > 200) notifications_.erase(notifications_.begin());
        return n;
    }

    publish_function publish_;
    database* db_;
    mutable std::mutex mu_;
    std::vector<project> projects_;
    std::vector<json> notifications_;
    int note_id_ = 0, comment_id_ = 0;
    std::mt19937 rng_{std::random_device{}()};
};

} // namespace cms
