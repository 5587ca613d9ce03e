//! The validated DAG: run order, dependency levels, and what lies downstream of a task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::{Problem, ProblemKind};
use crate::flow::{FlowSpec, TaskSpec};
use crate::positions::{IdIndex, PositionLists};

/// A validated flow: a [`FlowSpec`] known to be a DAG of uniquely named tasks, with its run
/// order and dependency levels worked out once.
///
/// Tasks are addressed by their index in [`FlowSpec::tasks`] (declaration order). The graph
/// keeps positions only, each kind of list in one buffer: about 70 bytes a task beside the spec.
/// Both parts are shared, so a copy of a flow costs two reference counts.
#[derive(Debug, Clone)]
pub struct Flow {
    spec: Arc<FlowSpec>,
    graph: Arc<Graph>,
}

/// A flow's graph, worked out once when it is validated.
#[derive(Debug)]
struct Graph {
    index: IdIndex,
    dependencies: PositionLists,
    dependents: PositionLists,
    order: Vec<usize>,
    level_of: Vec<usize>,
    levels: PositionLists,
}

impl Flow {
    /// The spec this flow was built from.
    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    /// The spec, shared: a store keeps it without a copy.
    pub fn shared_spec(&self) -> &Arc<FlowSpec> {
        &self.spec
    }

    /// The spec it was validated from, given back (copied only if it is shared).
    pub fn into_spec(self) -> FlowSpec {
        Arc::unwrap_or_clone(self.spec)
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The tasks in declaration order.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.spec.tasks
    }

    /// The task at `index`.
    pub fn task(&self, index: usize) -> &TaskSpec {
        &self.spec.tasks[index]
    }

    /// The index of the task with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.graph.index.get(id, |i| self.spec.tasks[i].id.as_str())
    }

    /// The tasks this task depends on.
    pub fn dependencies(&self, index: usize) -> &[usize] {
        &self.graph.dependencies[index]
    }

    /// The tasks that depend directly on this task.
    pub fn dependents(&self, index: usize) -> &[usize] {
        &self.graph.dependents[index]
    }

    /// A topological order: every task after all of its dependencies; among tasks ready at the
    /// same time, the one declared first runs first.
    pub fn order(&self) -> &[usize] {
        &self.graph.order
    }

    /// The run order as task ids.
    pub fn order_ids(&self) -> Vec<&str> {
        self.graph
            .order
            .iter()
            .map(|&i| self.spec.tasks[i].id.as_str())
            .collect()
    }

    /// Dependency levels: level 0 holds the tasks with no dependencies, level k the tasks whose
    /// deepest dependency is in level k-1. Each level lists tasks in declaration order.
    pub fn levels(&self) -> &PositionLists {
        &self.graph.levels
    }

    /// The level of one task.
    pub fn level_of(&self, index: usize) -> usize {
        self.graph.level_of[index]
    }

    /// Every task downstream of `index` (its dependents, theirs, and so on), in run order.
    pub fn downstream(&self, index: usize) -> Vec<usize> {
        let mut marked = vec![false; self.spec.tasks.len()];
        let mut stack = vec![index];
        while let Some(i) = stack.pop() {
            for &d in &self.graph.dependents[i] {
                if !marked[d] {
                    marked[d] = true;
                    stack.push(d);
                }
            }
        }
        self.graph
            .order
            .iter()
            .copied()
            .filter(|&i| marked[i])
            .collect()
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, task) in self.spec.tasks.iter().enumerate() {
            let mut label = format!("{}<br/><small>{}</small>", task.id, task.handler);
            if task.retries > 0 {
                let _ = write!(label, "<br/><small>retries: {}</small>", task.retries);
            }
            let _ = writeln!(out, "    t{i}[\"{}\"]", label.replace('"', "#quot;"));
        }
        for &i in &self.graph.order {
            for &d in &self.graph.dependencies[i] {
                let _ = writeln!(out, "    t{d} --> t{i}");
            }
        }
        out
    }
}

/// Builds the graph of a spec whose ids and dependencies validation has already resolved
/// (`index`: id to position; `dependencies`: each task's dependencies as positions).
/// Fails with a [`ProblemKind::Cycle`] problem when the dependencies loop.
pub(crate) fn build(
    spec: Arc<FlowSpec>,
    index: IdIndex,
    dependencies: PositionLists,
) -> Result<Flow, Problem> {
    let n = spec.tasks.len();
    let edges = dependencies
        .iter()
        .enumerate()
        .flat_map(|(i, deps)| deps.iter().map(move |&d| (d, i)));
    let dependents = PositionLists::grouped(n, edges);

    let mut waiting: Vec<usize> = dependencies.iter().map(<[usize]>::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    let mut level_of = vec![0usize; n];
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            level_of[d] = level_of[d].max(level_of[i] + 1);
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        return Err(cycle_problem(&spec, &dependencies, &waiting));
    }

    let depth = level_of.iter().copied().max().map_or(0, |m| m + 1);
    let levels = PositionLists::grouped(
        depth,
        level_of.iter().enumerate().map(|(i, &level)| (level, i)),
    );
    Ok(Flow {
        spec,
        graph: Arc::new(Graph {
            index,
            dependencies,
            dependents,
            order,
            level_of,
            levels,
        }),
    })
}

/// Finds one cycle among the tasks Kahn's algorithm could not order, printed in run direction.
fn cycle_problem(spec: &FlowSpec, dependencies: &PositionLists, waiting: &[usize]) -> Problem {
    // Every unordered task still waits on an unordered dependency, so walking dependencies from
    // any of them must come back to a task already seen.
    let start = waiting.iter().position(|&w| w > 0).unwrap_or(0);
    let mut position: HashMap<usize, usize> = HashMap::new();
    let mut walk = Vec::new();
    let mut current = start;
    while !position.contains_key(&current) {
        position.insert(current, walk.len());
        walk.push(current);
        current = dependencies[current]
            .iter()
            .copied()
            .find(|&d| waiting[d] > 0)
            .unwrap_or(current);
    }
    let mut cycle: Vec<usize> = walk[position[&current]..].to_vec();
    // The walk followed "depends on"; print in run direction, starting at the earliest declared.
    cycle.reverse();
    let first = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| **i)
        .map_or(0, |(p, _)| p);
    cycle.rotate_left(first);
    let mut names: Vec<&str> = cycle.iter().map(|&i| spec.tasks[i].id.as_str()).collect();
    names.push(names[0]);
    let task = spec.tasks[cycle[0]].id.clone();
    Problem {
        kind: ProblemKind::Cycle,
        path: format!("tasks[{}].depends_on", cycle[0]),
        message: format!(
            "the dependencies form a cycle: {}; remove one of these dependencies",
            names.join(" -> ")
        ),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests {
    use crate::FlowBuilder;

    fn diamond() -> crate::Flow {
        FlowBuilder::new("diamond")
            .task("d", "echo", |t| t.depends_on(["b", "c"]))
            .task("c", "echo", |t| t.depends_on(["a"]))
            .task("b", "echo", |t| t.depends_on(["a"]))
            .task("a", "echo", |t| t)
            .task("lonely", "echo", |t| t)
            .build()
            .validate(None)
            .expect("valid")
    }

    #[test]
    fn order_puts_dependencies_first_and_breaks_ties_by_declaration() {
        assert_eq!(diamond().order_ids(), ["a", "c", "b", "d", "lonely"]);
    }

    #[test]
    fn levels_group_tasks_by_depth() {
        let flow = diamond();
        let ids: Vec<Vec<&str>> = flow
            .levels()
            .iter()
            .map(|l| l.iter().map(|&i| flow.task(i).id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["a", "lonely"], vec!["c", "b"], vec!["d"]]);
    }

    #[test]
    fn downstream_is_transitive_and_in_run_order() {
        let flow = diamond();
        let a = flow.index_of("a").expect("a exists");
        let ids: Vec<&str> = flow
            .downstream(a)
            .iter()
            .map(|&i| flow.task(i).id.as_str())
            .collect();
        assert_eq!(ids, ["c", "b", "d"]);
    }

    #[test]
    fn mermaid_has_a_node_per_task_and_an_edge_per_dependency() {
        let text = diamond().to_mermaid();
        assert!(text.starts_with("flowchart TD\n"));
        assert_eq!(text.matches("-->").count(), 4);
        assert!(text.contains("t3 --> t2"), "{text}");
    }
}
