//! Shortest plans by breadth-first search, proving each generated game solvable.
//!
//! The search runs on a reduced state that keeps only what can matter for the goal: where the
//! agent is, what it holds, where the goal-kind objects are and their hot/cool/clean flags,
//! which receptacles are open, and the lamp. Actions on anything else never shorten a plan:
//! other objects only occupy the hand, closing only blocks access, putting a goal object
//! anywhere but the target means taking it again, and turning the lamp off undoes progress. So
//! the BFS optimum in the reduced space is the optimum of the game; the plan it returns is
//! replayed in the full game by the tests.
use std::collections::{HashMap, VecDeque};

use super::world::{Appliance, Goal, Place, World};

#[derive(Clone, PartialEq, Eq, Hash)]
struct State {
    room: usize,
    at: Option<usize>,
    holding: Option<usize>,
    /// Per goal-kind object: its place and flags (hot, cool, clean).
    objs: Vec<(Place, bool, bool, bool)>,
    open: u64,
    lamp_on: bool,
}

/// A shortest command sequence that meets the goal, or None if there is none.
pub fn solve(world: &World) -> Option<Vec<String>> {
    let kind = world.goal.kind().to_string();
    let relevant: Vec<usize> = (0..world.objects.len())
        .filter(|&i| world.objects[i].kind == kind)
        .collect();
    if world.receptacles.len() > 64 {
        return None;
    }
    let start = State {
        room: world.room,
        at: world.at,
        holding: world
            .holding
            .and_then(|h| relevant.iter().position(|&r| r == h)),
        objs: relevant
            .iter()
            .map(|&i| {
                let o = &world.objects[i];
                (o.place, o.hot, o.cool, o.clean)
            })
            .collect(),
        open: world
            .receptacles
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_open)
            .fold(0, |m, (i, _)| m | 1 << i),
        lamp_on: world.lamp_on,
    };
    let goal_met = |s: &State| -> bool {
        let count = |t: usize, f: &dyn Fn(&(Place, bool, bool, bool)) -> bool| {
            s.objs
                .iter()
                .filter(|o| o.0 == Place::In(t) && f(o))
                .count()
        };
        match &world.goal {
            Goal::PickAndPlace { target, .. } => count(*target, &|_| true) >= 1,
            Goal::PickCleanThenPlace { target, .. } => count(*target, &|o| o.3) >= 1,
            Goal::PickHeatThenPlace { target, .. } => count(*target, &|o| o.1) >= 1,
            Goal::PickCoolThenPlace { target, .. } => count(*target, &|o| o.2) >= 1,
            Goal::PickTwoObjAndPlace { target, .. } => count(*target, &|_| true) >= 2,
            Goal::LookAtObjInLight { .. } => {
                s.lamp_on && s.at == Some(world.lamp) && s.holding.is_some()
            }
        }
    };
    let target = world.goal.target();
    // Receptacles worth walking to: those with goal objects, the target, appliances, the lamp.
    let useful = |r: usize, s: &State| {
        Some(r) == target
            || r == world.lamp
            || world.receptacles[r].appliance.is_some()
            || s.objs.iter().any(|o| o.0 == Place::In(r))
    };
    let accessible = |r: usize, s: &State| !world.receptacles[r].openable || s.open & (1 << r) != 0;

    let mut parent: HashMap<State, Option<(State, String)>> = HashMap::new();
    parent.insert(start.clone(), None);
    let mut queue = VecDeque::from([start]);
    while let Some(s) = queue.pop_front() {
        if goal_met(&s) {
            let mut plan = Vec::new();
            let mut cur = s;
            while let Some(Some((prev, cmd))) = parent.get(&cur).cloned() {
                plan.push(cmd);
                cur = prev;
            }
            plan.reverse();
            return Some(plan);
        }
        let mut next: Vec<(State, String)> = Vec::new();
        for &e in &world.rooms[s.room].exits {
            next.push((
                State {
                    room: e,
                    at: None,
                    ..s.clone()
                },
                format!("go to {}", world.rooms[e].name),
            ));
        }
        for (r, rc) in world.receptacles.iter().enumerate() {
            if rc.room == s.room && s.at != Some(r) && useful(r, &s) {
                next.push((
                    State {
                        at: Some(r),
                        ..s.clone()
                    },
                    format!("go to {}", rc.name),
                ));
            }
        }
        if let Some(r) = s.at {
            let rc = &world.receptacles[r];
            if rc.openable && s.open & (1 << r) == 0 {
                next.push((
                    State {
                        open: s.open | 1 << r,
                        ..s.clone()
                    },
                    format!("open {}", rc.name),
                ));
            }
            if s.holding.is_none() && accessible(r, &s) {
                for (k, o) in s.objs.iter().enumerate() {
                    if o.0 == Place::In(r) {
                        let mut n = s.clone();
                        n.objs[k].0 = Place::Held;
                        n.holding = Some(k);
                        next.push((
                            n,
                            format!("take {} from {}", world.objects[relevant[k]].name, rc.name),
                        ));
                    }
                }
            }
            if let Some(k) = s.holding {
                let name = &world.objects[relevant[k]].name;
                if Some(r) == target && accessible(r, &s) {
                    let mut n = s.clone();
                    n.objs[k].0 = Place::In(r);
                    n.holding = None;
                    next.push((n, format!("put {name} in/on {}", rc.name)));
                }
                if world.objects[relevant[k]].treatable {
                    let (verb, apply): (&str, fn(&mut (Place, bool, bool, bool))) =
                        match rc.appliance {
                            Some(Appliance::Microwave) => ("heat", |o| {
                                o.1 = true;
                                o.2 = false;
                            }),
                            Some(Appliance::Fridge) => ("cool", |o| {
                                o.2 = true;
                                o.1 = false;
                            }),
                            Some(Appliance::Sink) => ("clean", |o| o.3 = true),
                            None => ("", |_| {}),
                        };
                    if !verb.is_empty() {
                        let mut n = s.clone();
                        apply(&mut n.objs[k]);
                        next.push((n, format!("{verb} {name} with {}", rc.name)));
                    }
                }
            }
            if r == world.lamp && !s.lamp_on {
                next.push((
                    State {
                        lamp_on: true,
                        ..s.clone()
                    },
                    "use desklamp 1".to_string(),
                ));
            }
        }
        for (n, cmd) in next {
            if !parent.contains_key(&n) {
                parent.insert(n.clone(), Some((s.clone(), cmd)));
                queue.push_back(n);
            }
        }
    }
    None
}
