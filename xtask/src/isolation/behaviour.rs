//! placeholder
pub struct BehaviourReport;
pub async fn run_behaviour() {}
