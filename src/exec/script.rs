//! `EVAL`/`EVALSHA`/`FCALL` and `SCRIPT`/`FUNCTION` on the worker: the
//! requests the script thread answers are handed over as deferred jobs
//! (`crate::script`); `SCRIPT KILL`, `FUNCTION KILL` and `FUNCTION STATS`
//! are answered here, also while a script is busy.

use std::sync::atomic::Ordering::Relaxed;

use super::{Ctx, Flow};
use crate::jobs::Task;
use crate::protocol::redis::{ScriptAdmin, ScriptRun};
use crate::protocol::reply::{Proto, array, bulk, error, integer, map, ok};
use crate::script::gate::Kill;
use crate::script::{Admin, BUSY_EVAL, BUSY_FUNCTION, Call, DISABLED, Run};
use crate::stats::Counter;

/// `EVAL`, `EVALSHA`, `FCALL` (+ `_RO`): deferred to the script thread.
pub fn run(ctx: &mut Ctx<'_>, r: ScriptRun<'_>, out: &mut Vec<u8>) -> Flow {
    ctx.stats.incr(Counter::Management);
    if !ctx.shared.config.scripting.enabled {
        error(out, Proto::Resp, DISABLED);
        return Flow::Continue;
    }
    let mut all = r.rest.iter();
    let keys = all.by_ref().take(r.numkeys).map(<[u8]>::to_vec).collect();
    let args = all.map(<[u8]>::to_vec).collect();
    Flow::Defer(Task::Script(Call::Run(Run {
        kind: r.kind,
        ro: r.ro,
        target: r.target.to_vec(),
        keys,
        args,
        resp3: ctx.client.is_resp3(),
        // The worker sets the session's user before handing it over.
        user: None,
    })))
}

/// `SCRIPT …` / `FUNCTION …`.
pub fn admin(ctx: &mut Ctx<'_>, a: ScriptAdmin<'_>, out: &mut Vec<u8>) -> Flow {
    ctx.stats.incr(Counter::Management);
    let sc = &ctx.shared.scripting;
    if a.deferred() && !ctx.shared.config.scripting.enabled {
        error(out, Proto::Resp, DISABLED);
        return Flow::Continue;
    }
    let call = match a {
        ScriptAdmin::Kill { function } => {
            match sc.gate.kill(function) {
                Kill::Requested => ok(out, Proto::Resp),
                Kill::NotBusy => error(
                    out,
                    Proto::Resp,
                    "NOTBUSY No scripts in execution right now.",
                ),
                Kill::Unkillable => error(
                    out,
                    Proto::Resp,
                    "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
                ),
                Kill::WrongKind => error(
                    out,
                    Proto::Resp,
                    if function { BUSY_EVAL } else { BUSY_FUNCTION },
                ),
            }
            return Flow::Continue;
        }
        ScriptAdmin::FunctionStats => {
            let resp3 = ctx.client.is_resp3();
            map(out, 2, resp3);
            bulk(out, b"running_script");
            match sc.running() {
                Some((name, cmd)) if sc.gate.running() => {
                    map(out, 3, resp3);
                    bulk(out, b"name");
                    bulk(out, name.as_bytes());
                    bulk(out, b"command");
                    array(out, cmd.len());
                    cmd.iter().for_each(|a| bulk(out, a));
                    bulk(out, b"duration_ms");
                    integer(out, sc.gate.ran().as_millis() as i64);
                }
                _ => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            }
            bulk(out, b"engines");
            map(out, 1, resp3);
            bulk(out, b"LUA");
            map(out, 2, resp3);
            bulk(out, b"libraries_count");
            integer(out, sc.counters.libraries.load(Relaxed) as i64);
            bulk(out, b"functions_count");
            integer(out, sc.counters.functions.load(Relaxed) as i64);
            return Flow::Continue;
        }
        ScriptAdmin::Load(body) => Admin::Load(body.to_vec()),
        ScriptAdmin::Exists(shas) => Admin::Exists(shas.iter().map(<[u8]>::to_vec).collect()),
        ScriptAdmin::Flush => Admin::Flush,
        ScriptAdmin::FunctionLoad { replace, code } => Admin::FunctionLoad {
            replace,
            code: code.to_vec(),
        },
        ScriptAdmin::FunctionDelete(n) => Admin::FunctionDelete(n.to_vec()),
        ScriptAdmin::FunctionFlush => Admin::FunctionFlush,
        ScriptAdmin::FunctionList { pattern, code } => Admin::FunctionList {
            pattern: pattern.map(<[u8]>::to_vec),
            code,
            resp3: ctx.client.is_resp3(),
        },
    };
    Flow::Defer(Task::Script(Call::Admin(call)))
}
