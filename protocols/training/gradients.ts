// Where a member's gradients come from: the model kind's GradientComputer (kernels/models/kind.ts),
// built from the TrainingModel the member is given. A driver may wrap it (instrumentation, or a test
// that makes a member lie) through GroupMemberInit.wrapComputer.
export type { GradientComputer, MemberPlacement, TrainingModel } from '../../kernels/models/kind.js'
